--- Buffer tracking: every change in a shared buffer becomes one collab/edit with the protocol's two counters
--- (`sent`, `applied`); the daemon's edits are applied under a guard so they are not echoed back, dropped when
--- stale, and answered with the empty edit when they cannot be applied. What changed is found in time that does
--- not grow with the file: `on_bytes` says which rows it touched, and only those rows of the buffer are read and
--- compared with the copy of its lines kept here (`lines`).
local client = require('codecollab.client')
local config = require('codecollab.config')

local M = {}

--- bufnr -> { uri, sent, applied, applying, scheduled, lines, nl, eol, region }: `lines`, `nl` and `eol` are the
--- buffer's text as last sent or applied; `region` the rows changed since ({ first, col, last, old_last }: rows
--- `first`..`last` of the buffer now stand where rows `first`..`old_last` of `lines` were; the rest is the same, and
--- so are the first `col` bytes of row `first`).
M.tracked = {}
--- Called with the buffer after a daemon edit was applied to it (the init module sets it).
M.on_remote_edit = nil

local function newline(bufnr)
  return vim.bo[bufnr].fileformat == 'dos' and '\r\n' or (vim.bo[bufnr].fileformat == 'mac' and '\r' or '\n')
end

--- The buffer's whole text, with its own line endings and final newline.
function M.text(bufnr)
  local lines = vim.api.nvim_buf_get_lines(bufnr, 0, -1, false)
  local nl = newline(bufnr)
  local text = table.concat(lines, nl)
  if vim.bo[bufnr].eol and #lines > 0 then
    text = text .. nl
  end
  return text
end

--- Sends one edit; `stop` (true or false) says whether it starts an undo step of its own.
local function send_edit(state, changes, stop)
  client.notify('collab/edit', { uri = state.uri, revision = state.applied, changes = changes, undoStop = stop })
  state.sent = state.sent + 1
end

--- LSP position (line, UTF-8 byte column) of byte `offset` (0-based) in `text`. Line breaks are found with plain
--- searches (a pattern with a character class tests every byte in Lua's matcher: a long line would cost that on
--- every keystroke), each searched for again only once passed.
local function position(text, offset)
  local line, line_start, i = 0, 1, 1
  local lf, cr = 0, 0 -- the next LF and CR at or after `i`; false once there is none
  while true do
    if lf and lf < i then
      lf = text:find('\n', i, true) or false
    end
    if cr and cr < i then
      cr = text:find('\r', i, true) or false
    end
    local nl = (lf and cr) and math.min(lf, cr) or lf or cr
    if not nl or nl > offset then
      break
    end
    if nl == cr and text:byte(nl + 1) == 10 then
      if nl + 1 > offset then
        break
      end
      nl = nl + 1
    end
    line, line_start, i = line + 1, nl + 1, nl + 1
  end
  return { line = line, character = offset - line_start + 1 }
end

local function continuation(text, i)
  local byte = text:byte(i)
  return byte ~= nil and byte >= 0x80 and byte < 0xC0
end

--- The one replacement turning `old` into `new`: their common prefix and suffix are trimmed, and the cut is
--- moved to character boundaries and never splits a CRLF. `same` (optional) is a length of prefix known to be
--- common (checked: a wrong one only costs the search from the start), so a change in a long line costs no walk
--- over the bytes before it.
function M.diff(old, new, same)
  if old == new then
    return nil
  end
  local prefix = 0
  local max = math.min(#old, #new)
  if same and same > 0 and same <= max and old:sub(1, same) == new:sub(1, same) then
    prefix = same
  end
  while prefix < max and old:byte(prefix + 1) == new:byte(prefix + 1) do
    prefix = prefix + 1
  end
  local suffix = 0
  while suffix < max - prefix and old:byte(#old - suffix) == new:byte(#new - suffix) do
    suffix = suffix + 1
  end
  -- Start and end on character boundaries, outside any CRLF.
  while prefix > 0 and (continuation(old, prefix + 1) or (old:sub(prefix, prefix) == '\r' and old:sub(prefix + 1, prefix + 1) == '\n')) do
    prefix = prefix - 1
  end
  while suffix > 0 and (continuation(old, #old - suffix + 1) or (old:sub(#old - suffix, #old - suffix) == '\r' and old:sub(#old - suffix + 1, #old - suffix + 1) == '\n')) do
    suffix = suffix - 1
  end
  local start, finish = prefix, #old - suffix
  local range = { start = position(old, start), ['end'] = position(old, finish) }
  return { range = range, text = new:sub(prefix + 1, #new - suffix) }
end

--- Widens `state.region` by one `on_bytes` change: from byte `col` of row `row` on, rows `row`..`row + old_rows` of
--- the buffer as it was became rows `row`..`row + new_rows`. A change leaves everything before where it starts as
--- it was, so the earliest start of all of them bounds what is the same.
local function widen(state, row, col, old_rows, new_rows)
  local old_end, new_end = row + old_rows, row + new_rows
  local region = state.region
  if not region then
    -- Before this change the buffer was `lines`: its rows from `row` on are the same rows of `lines`.
    state.region = { first = row, col = col, last = new_end, old_last = old_end }
    return
  end
  local reach = math.max(region.last, old_end)
  region.old_last = region.old_last + (reach - region.last)
  region.last = reach + (new_end - old_end)
  if row < region.first then
    region.first, region.col = row, col
  elseif row == region.first then
    region.col = math.min(region.col, col)
  end
end

--- Replaces items `first`..`last` (1-based, inclusive; `last` may be `first - 1`) of `list` with those of `new`.
local function splice(list, first, last, new)
  local n, delta = #list, #new - (last - first + 1)
  if delta ~= 0 then
    table.move(list, last + 1, n, last + 1 + delta)
    for i = n + delta + 1, n do
      list[i] = nil
    end
  end
  for i = 1, #new do
    list[first + i - 1] = new[i]
  end
end

--- Brings `lines` up to the buffer, reading only the rows in `region` (all of them after a reload or a change of
--- line endings); returns the one change that does it, in the old text's positions, or nil.
local function catch_up(bufnr, state)
  local region = state.region
  state.region = nil
  local count = vim.api.nvim_buf_line_count(bufnr)
  local nl, eol = newline(bufnr), vim.bo[bufnr].eol
  local lines = state.lines
  if region == nil and nl == state.nl and eol == state.eol then
    return nil -- no row changed
  end
  local first, last, old_last = 0, count - 1, #lines - 1
  local same = 0 -- bytes known to be the same at the start of row `first`
  if region ~= 'all' and nl == state.nl then
    region = region or { first = count - 1, last = count - 1, old_last = #lines - 1 }
    first, last, old_last = math.max(region.first, 0), region.last, region.old_last
    -- Reaching the end on either side, or 'eol' changed (the final line break): to the end on both. Rows after
    -- a region are the same on both sides, and so are rows before it, so starting earlier is always right.
    if eol ~= state.eol or last >= count - 1 or old_last >= #lines - 1 then
      first = math.max(0, math.min(first, count - 1, #lines - 1))
      last, old_last = count - 1, #lines - 1
    end
    if region.col and first == region.first then
      same = region.col
    end
  end
  local new = vim.api.nvim_buf_get_lines(bufnr, first, last + 1, false)
  local old_text = table.concat(lines, state.nl, first + 1, old_last + 1)
  local new_text = table.concat(new, nl)
  if last == count - 1 then
    -- The region reaches the end of the text, whose final line break is there when 'eol' is set.
    old_text = old_text .. ((state.eol and #lines > 0) and state.nl or '')
    new_text = new_text .. ((eol and count > 0) and nl or '')
  end
  splice(lines, first + 1, old_last + 1, new)
  state.nl, state.eol = nl, eol
  local change = M.diff(old_text, new_text, same)
  if change then
    change.range.start.line = change.range.start.line + first
    change.range['end'].line = change.range['end'].line + first
  end
  return change
end

--- Sends what changed in `bufnr` since the last edit sent (if anything: `scheduled` says a change is waiting).
function M.flush(bufnr)
  local state = M.tracked[bufnr]
  if not state or not state.scheduled or not vim.api.nvim_buf_is_loaded(bufnr) then
    return
  end
  state.scheduled = false
  local change = catch_up(bufnr, state)
  if change then
    -- One undo step is what `u` would undo: Neovim's undo entry (an insert-mode session, one normal-mode command,
    -- a `:s` over many lines), whose number changes when the next one starts.
    local entry = vim.api.nvim_buf_call(bufnr, vim.fn.changenr)
    send_edit(state, { change }, entry ~= state.undo_entry)
    state.undo_entry = entry
  end
end

local function on_bytes(_, bufnr, _, start_row, start_col, _, old_end_row, _, _, new_end_row)
  local state = M.tracked[bufnr]
  if not state then
    return true -- detach
  end
  if state.region ~= 'all' then
    widen(state, start_row, start_col, old_end_row, new_end_row)
  end
  if state.applying or state.scheduled then
    return
  end
  -- Neovim calls this before some changes are in the buffer (`J`, for one): read the rows once they are.
  state.scheduled = true
  vim.schedule(function()
    M.flush(bufnr)
  end)
end

--- `u` and `<C-r>` in a shared buffer take back your own changes only (setup `undo = 'all'` keeps Neovim's).
local UNDO_KEYS = { u = false, ['<C-r>'] = true }
--- And so do `:undo` and `:redo` typed alone on the command line (buffer-local abbreviations).
local UNDO_COMMANDS = { u = 'undo', undo = 'undo', red = 'redo', redo = 'redo' }

local function map_undo(bufnr)
  if config.values.undo ~= 'own' then
    return
  end
  for lhs, redo in pairs(UNDO_KEYS) do
    vim.keymap.set('n', lhs, function()
      M.undo(bufnr, redo, vim.v.count1, function(done)
        if not done then
          vim.api.nvim_echo({ { redo and 'Already at newest change' or 'Already at oldest change' } }, false, {})
        end
      end)
    end, { buffer = bufnr, desc = redo and 'CodeCollab: redo your own change' or 'CodeCollab: undo your own change' })
  end
  for typed, command in pairs(UNDO_COMMANDS) do
    vim.keymap.set('ca', typed, function()
      return (vim.fn.getcmdtype() == ':' and vim.fn.getcmdline() == typed) and ('CodeCollab ' .. command) or typed
    end, { buffer = bufnr, expr = true })
  end
end

local function unmap_undo(bufnr)
  if not vim.api.nvim_buf_is_valid(bufnr) then
    return
  end
  for lhs, _ in pairs(UNDO_KEYS) do
    pcall(vim.keymap.del, 'n', lhs, { buffer = bufnr })
  end
  for typed, _ in pairs(UNDO_COMMANDS) do
    pcall(vim.keymap.del, 'ca', typed, { buffer = bufnr })
  end
end

--- Starts tracking `bufnr` as `uri` (collab/open with its text; both counters at 0).
function M.track(bufnr, uri)
  if M.tracked[bufnr] then
    return
  end
  M.tracked[bufnr] = {
    uri = uri,
    sent = 0,
    applied = 0,
    applying = false,
    scheduled = false,
    lines = vim.api.nvim_buf_get_lines(bufnr, 0, -1, false),
    nl = newline(bufnr),
    eol = vim.bo[bufnr].eol,
  }
  client.notify('collab/open', { uri = uri, text = M.text(bufnr) })
  map_undo(bufnr)
  vim.api.nvim_buf_attach(bufnr, false, {
    on_bytes = on_bytes,
    -- The file was read again (`:edit`, 'autoread' after a formatter or `git checkout` rewrote it): no on_bytes
    -- comes for that, so what changed is the difference from what was last sent.
    on_reload = function()
      local state = M.tracked[bufnr]
      if state then
        state.region = 'all'
      end
      if state and not state.scheduled then
        state.scheduled = true
        vim.schedule(function()
          M.flush(bufnr)
        end)
      end
    end,
    on_detach = function()
      M.tracked[bufnr] = nil
    end,
  })
end

--- Asks the daemon to undo (or redo) this editor's own most recent step in `bufnr`, `count` times; then puts the
--- cursor where the last change was, as `u` does. `done(any)` is called at the end (false: nothing was left).
function M.undo(bufnr, redo, count, done)
  local state = M.tracked[bufnr]
  if not state then
    return done(false)
  end
  -- What was typed and not sent yet is part of the latest step.
  M.flush(bufnr)
  local undone, applied = 0, state.applied
  local function step()
    client.request(redo and 'collab/redo' or 'collab/undo', { uri = state.uri }, function(err, result)
      local ok = not err and result and result.done
      if ok then
        undone = undone + 1
      end
      if ok and undone < count then
        return step()
      end
      -- The change came before the answer, and was applied unless something typed meanwhile made it stale (then
      -- it comes again, transformed, and the cursor stays where the typing is).
      if undone > 0 and state.applied > applied and state.last_applied and vim.api.nvim_buf_is_loaded(bufnr) then
        for _, win in ipairs(vim.fn.win_findbuf(bufnr)) do
          local row = math.min(state.last_applied[1] + 1, vim.api.nvim_buf_line_count(bufnr))
          local line = vim.api.nvim_buf_get_lines(bufnr, row - 1, row, false)[1] or ''
          pcall(vim.api.nvim_win_set_cursor, win, { row, math.min(state.last_applied[2], #line) })
        end
      end
      done(undone > 0)
    end)
  end
  step()
end

function M.untrack(bufnr)
  local state = M.tracked[bufnr]
  if state then
    M.tracked[bufnr] = nil
    unmap_undo(bufnr)
    client.notify('collab/close', { uri = state.uri })
  end
end

--- Forgets every buffer (the session is over): no closes are sent, and the undo keys are Neovim's again.
function M.forget_all()
  for bufnr, _ in pairs(M.tracked) do
    unmap_undo(bufnr)
  end
  M.tracked = {}
end

function M.bufnr_for(uri)
  for bufnr, state in pairs(M.tracked) do
    if state.uri == uri then
      return bufnr, state
    end
  end
end

local function split_lines(bufnr, text)
  if vim.bo[bufnr].fileformat == 'dos' then
    text = text:gsub('\r\n', '\n')
  end
  return vim.split(text, '\n', { plain = true })
end

--- Applies one change exactly as the text model of M.text() says: lines joined by the buffer's line ending, plus
--- one when 'eol' is set (so a position on the line after the last one is the end of the text).
local function apply_change(bufnr, change)
  local s, e = change.range.start, change.range['end']
  local new = split_lines(bufnr, change.text)
  local count = vim.api.nvim_buf_line_count(bufnr)
  if s.line < count and e.line < count then
    vim.api.nvim_buf_set_text(bufnr, s.line, s.character, e.line, e.character, new)
    return
  end
  -- The change touches the end of the text, after the final line break: rebuild the rows from its start on.
  local tail = vim.api.nvim_buf_get_lines(bufnr, s.line, -1, false)
  if vim.bo[bufnr].eol then
    table.insert(tail, '')
  end
  local at = function(line)
    return tail[line - s.line + 1]
  end
  assert(at(s.line) and at(e.line), 'position past the end of the buffer')
  local prefix = at(s.line):sub(1, s.character)
  local suffix = at(e.line):sub(e.character + 1)
  local result = split_lines(bufnr, prefix .. change.text .. suffix)
  for i = e.line - s.line + 2, #tail do
    result[#result + 1] = tail[i]
  end
  local eol = s.line + #result > 1 and result[#result] == ''
  if eol then
    table.remove(result)
  end
  vim.api.nvim_buf_set_lines(bufnr, s.line, -1, false, result)
  vim.bo[bufnr].eol = eol
  vim.bo[bufnr].fixeol = eol
end

--- Applies a daemon collab/edit, or drops it if stale, or answers with the empty edit if it cannot be applied.
function M.apply(params)
  local bufnr, state = M.bufnr_for(params.uri)
  if not bufnr then
    return
  end
  -- A local change not sent yet comes first: then this edit is stale, and the daemon re-sends it transformed.
  M.flush(bufnr)
  if params.revision ~= state.sent then
    return
  end
  state.applying = true
  -- A view-only session keeps the buffer 'nomodifiable' for the user; the daemon's edits still apply.
  local modifiable = vim.bo[bufnr].modifiable
  vim.bo[bufnr].modifiable = true
  local ok = pcall(function()
    -- Changes apply in order, each relative to the text the previous one left.
    for _, change in ipairs(params.changes) do
      apply_change(bufnr, change)
    end
  end)
  vim.bo[bufnr].modifiable = modifiable
  state.applying = false
  -- The copy of the lines takes in what was applied (on_bytes saw which rows), which is not sent back.
  catch_up(bufnr, state)
  if ok then
    state.applied = state.applied + 1
    local first = params.changes[1]
    state.last_applied = first and { first.range.start.line, first.range.start.character } or state.last_applied
    if M.on_remote_edit then
      M.on_remote_edit(bufnr)
    end
  else
    send_edit(state, {})
  end
end

return M
