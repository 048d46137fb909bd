--- Buffer tracking: every change in a shared buffer becomes one collab/edit with the protocol's two counters
--- (`sent`, `applied`); the daemon's edits are applied under a guard so they are not echoed back, dropped when
--- stale, and answered with the empty edit when they cannot be applied.
local client = require('codecollab.client')

local M = {}

--- bufnr -> { uri, sent, applied, applying }
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

local function send_edit(state, changes)
  client.notify('collab/edit', { uri = state.uri, revision = state.applied, changes = changes })
  state.sent = state.sent + 1
end

--- LSP position (line, UTF-8 byte column) of byte `offset` (0-based) in `text`.
local function position(text, offset)
  local line, line_start = 0, 1
  local i = 1
  while true do
    local nl = text:find('[\r\n]', i)
    if not nl or nl > offset then
      break
    end
    if text:sub(nl, nl) == '\r' and text:sub(nl + 1, nl + 1) == '\n' then
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
--- moved to character boundaries and never splits a CRLF.
function M.diff(old, new)
  if old == new then
    return nil
  end
  local prefix = 0
  local max = math.min(#old, #new)
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

--- Sends what changed in `bufnr` since the last edit sent (if anything: `scheduled` says a change is waiting).
function M.flush(bufnr)
  local state = M.tracked[bufnr]
  if not state or not state.scheduled or not vim.api.nvim_buf_is_loaded(bufnr) then
    return
  end
  state.scheduled = false
  local text = M.text(bufnr)
  local change = M.diff(state.shadow, text)
  state.shadow = text
  if change then
    send_edit(state, { change })
  end
end

local function on_bytes(_, bufnr)
  local state = M.tracked[bufnr]
  if not state then
    return true -- detach
  end
  if state.applying or state.scheduled then
    return
  end
  -- Neovim calls this before some changes are in the buffer (`J`, for one): read the text once they are.
  state.scheduled = true
  vim.schedule(function()
    M.flush(bufnr)
  end)
end

--- Starts tracking `bufnr` as `uri` (collab/open with its text; both counters at 0).
function M.track(bufnr, uri)
  if M.tracked[bufnr] then
    return
  end
  local text = M.text(bufnr)
  M.tracked[bufnr] = { uri = uri, sent = 0, applied = 0, applying = false, scheduled = false, shadow = text }
  client.notify('collab/open', { uri = uri, text = text })
  vim.api.nvim_buf_attach(bufnr, false, {
    on_bytes = on_bytes,
    -- The file was read again (`:edit`, 'autoread' after a formatter or `git checkout` rewrote it): no on_bytes
    -- comes for that, so what changed is the difference from what was last sent.
    on_reload = function()
      local state = M.tracked[bufnr]
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

function M.untrack(bufnr)
  local state = M.tracked[bufnr]
  if state then
    M.tracked[bufnr] = nil
    client.notify('collab/close', { uri = state.uri })
  end
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
  -- The change touches the end of the text, after the final line break: rebuild the tail precisely.
  local lines = vim.api.nvim_buf_get_lines(bufnr, 0, -1, false)
  if vim.bo[bufnr].eol then
    table.insert(lines, '')
  end
  assert(s.line < #lines and e.line < #lines, 'position past the end of the buffer')
  local prefix = lines[s.line + 1]:sub(1, s.character)
  local suffix = lines[e.line + 1]:sub(e.character + 1)
  local replaced = split_lines(bufnr, prefix .. change.text .. suffix)
  local result = {}
  for i = 1, s.line do
    result[#result + 1] = lines[i]
  end
  for _, line in ipairs(replaced) do
    result[#result + 1] = line
  end
  for i = e.line + 2, #lines do
    result[#result + 1] = lines[i]
  end
  local eol = #result > 1 and result[#result] == ''
  if eol then
    table.remove(result)
  end
  vim.api.nvim_buf_set_lines(bufnr, s.line, -1, false, vim.list_slice(result, s.line + 1))
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
  state.shadow = M.text(bufnr)
  if ok then
    state.applied = state.applied + 1
    if M.on_remote_edit then
      M.on_remote_edit(bufnr)
    end
  else
    send_edit(state, {})
  end
end

return M
