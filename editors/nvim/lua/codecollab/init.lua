--- CodeCollab for Neovim: real-time co-editing through codecollab-daemon. Public API: setup(opts), status(),
--- command(args), complete(...). Buffers under the shared folder are tracked automatically.
local config = require('codecollab.config')
local client = require('codecollab.client')
local buffer = require('codecollab.buffer')
local cursors = require('codecollab.cursors')

local M = {}

local state = {
  connection = 'idle',
  session = nil,
  root = nil, -- absolute path of the shared folder
  invite = nil,
  view_invite = nil,
  -- The same invites as links to the web client the server serves.
  web_invite = nil,
  web_view_invite = nil,
  peers = {},
  ready = nil, -- true once the share or join was answered (a join's files are on disk then)
  following = nil, -- name of the peer being followed
  follow_at = nil, -- { buf, row?, col? }: where following last put the cursor (no row: switched, caret to come)
  approvals = {}, -- session path -> uri: files that run by themselves, changed by others, waiting for a yes
}

M.state = state

function M.setup(opts)
  config.setup(opts)
end

local function notify(message, level)
  vim.notify('CodeCollab: ' .. message, level or vim.log.levels.INFO)
end

local function uri_of(bufnr)
  local name = vim.api.nvim_buf_get_name(bufnr)
  if name == '' then
    return nil
  end
  return vim.uri_from_fname(vim.fn.fnamemodify(name, ':p'))
end

local function under_root(bufnr)
  if not state.root then
    return false
  end
  local path = vim.fn.fnamemodify(vim.api.nvim_buf_get_name(bufnr), ':p')
  local root = state.root:gsub('/$', '') .. '/'
  return path:sub(1, #root) == root
end

local function track_if_shared(bufnr)
  if state.session and vim.api.nvim_buf_is_loaded(bufnr) and vim.bo[bufnr].buftype == '' and under_root(bufnr) then
    buffer.track(bufnr, uri_of(bufnr))
    if state.connection == 'readonly' then
      vim.bo[bufnr].modifiable = false
    end
  end
end

--- Redraws statuslines, and tells statusline plugins (`User CodeCollabStatus`) that status() changed.
local function status_changed()
  vim.cmd('redrawstatus!')
  vim.api.nvim_exec_autocmds('User', { pattern = 'CodeCollabStatus', modeline = false })
end

--- Everyone in the session but this editor.
local function others()
  return vim.tbl_filter(function(peer)
    return not peer.you
  end, state.peers)
end

local function peer_named(name)
  for _, peer in ipairs(others()) do
    if peer.name == name then
      return peer
    end
  end
end

local function stop_following(why)
  if not state.following then
    return
  end
  local name = state.following
  state.following, state.follow_at = nil, nil
  status_changed()
  notify(('stopped following %s%s'):format(name, why and (' (' .. why .. ')') or ''))
end

--- Takes the cursor to the followed peer: into the file the peer is in (the peer list says which, opening it if
--- needed), then to the peer's caret there once the daemon has sent it.
local function follow_step()
  local peer = state.following and peer_named(state.following)
  if not peer or not peer.uri then
    return
  end
  local bufnr = buffer.bufnr_for(peer.uri)
  if bufnr ~= vim.api.nvim_get_current_buf() then
    local target = bufnr or vim.fn.bufadd(vim.fn.fnamemodify(vim.uri_to_fname(peer.uri), ':~:.'))
    state.follow_at = { buf = target }
    local ok, err = pcall(vim.api.nvim_set_current_buf, target)
    if not ok then
      return stop_following('could not open ' .. vim.uri_to_fname(peer.uri) .. ': ' .. tostring(err))
    end
    bufnr = buffer.bufnr_for(peer.uri)
    if not bufnr then
      return -- tracked once loaded; the daemon then sends the cursors
    end
  end
  local row, col = cursors.caret_of(peer.uri, peer.id)
  if not row then
    return
  end
  pcall(vim.api.nvim_win_set_cursor, 0, { row + 1, col })
  local pos = vim.api.nvim_win_get_cursor(0)
  state.follow_at = { buf = bufnr, row = pos[1], col = pos[2] }
end

--- Whether the cursor is where following put it (so a CursorMoved is ours, not the user's).
local function at_follow_position()
  local at = state.follow_at
  if not at or at.buf ~= vim.api.nvim_get_current_buf() then
    return false
  end
  local pos = vim.api.nvim_win_get_cursor(0)
  return at.row == nil or (at.row == pos[1] and at.col == pos[2])
end

-- Text others typed moves our cursor too: that is not the user moving.
buffer.on_remote_edit = function(bufnr)
  if state.following and state.follow_at and state.follow_at.row and bufnr == vim.api.nvim_get_current_buf() then
    local pos = vim.api.nvim_win_get_cursor(0)
    state.follow_at.row, state.follow_at.col = pos[1], pos[2]
  end
end

local handlers = {
  ['collab/edit'] = function(_, params)
    buffer.apply(params)
  end,
  ['collab/cursors'] = function(_, params)
    cursors.by_uri[params.uri] = params.cursors
    local bufnr = buffer.bufnr_for(params.uri)
    if bufnr then
      cursors.draw(bufnr, params.cursors)
    end
    follow_step()
  end,
  ['collab/peers'] = function(_, params)
    state.peers = params.peers
    status_changed()
    follow_step()
  end,
  -- Files the session renamed or deleted (a peer, or the disk), already carried out on disk. A buffer follows a
  -- rename (BufFilePost then shares it under the new name). A deleted file's buffer keeps its text, leaves the
  -- session, and the user is told: writing it creates the file again, for everyone.
  ['collab/files'] = function(_, params)
    for _, r in ipairs(params.renamed or {}) do
      local old, new = vim.uri_to_fname(r.oldUri), vim.uri_to_fname(r.newUri)
      local bufnr = buffer.bufnr_for(r.oldUri) or vim.fn.bufnr(old)
      if bufnr > 0 and vim.api.nvim_buf_is_loaded(bufnr) and vim.fn.bufnr(new) == -1 then
        vim.api.nvim_buf_set_name(bufnr, new)
        -- The buffer is the new file's now: writing it there (the session's text) lets the next :w go through
        -- without E13, as after a rename by Neovim itself.
        vim.api.nvim_buf_call(bufnr, function()
          vim.cmd('silent! keepalt noautocmd write!')
        end)
        notify(('%s was renamed to %s; its buffer follows'):format(
          vim.fn.fnamemodify(old, ':~:.'),
          vim.fn.fnamemodify(new, ':~:.')
        ))
      end
    end
    for _, uri in ipairs(params.deleted or {}) do
      local bufnr = buffer.bufnr_for(uri)
      if bufnr then
        buffer.untrack(bufnr)
        notify(
          ('%s was deleted in the session. Its buffer keeps the text: :w creates the file again, for everyone; :bdelete! drops it'):format(
            vim.fn.fnamemodify(vim.uri_to_fname(uri), ':~:.')
          ),
          vim.log.levels.WARN
        )
      end
    end
  end,
  ['collab/approval'] = function(_, params)
    state.approvals[params.path] = params.uri
    local verb = params.created and 'created' or 'changed'
    notify(
      ('%s %s %s, which editors or shells run by themselves when the folder opens. It is not written to disk until you allow it: :CodeCollab allow %s'):format(
        table.concat(params.by, ', '),
        verb,
        params.path,
        params.path
      ),
      vim.log.levels.WARN
    )
  end,
  ['collab/state'] = function(_, params)
    local previous = state.connection
    state.connection = params.state
    state.session = params.session or state.session
    if params.state == 'idle' then
      state.session = nil
    end
    if (params.state == 'readonly') ~= (previous == 'readonly') then
      for bufnr, _ in pairs(buffer.tracked) do
        vim.bo[bufnr].modifiable = params.state ~= 'readonly'
      end
    end
    status_changed()
  end,
}

local function start()
  local c, err = client.ensure(handlers)
  if not c then
    notify(err, vim.log.levels.ERROR)
  end
  return c
end

local augroup = vim.api.nvim_create_augroup('codecollab', { clear = true })

--- Row `row` (0-based) of `bufnr`, or '' past the end.
local function line_at(bufnr, row)
  return vim.api.nvim_buf_get_lines(bufnr, row, row + 1, false)[1] or ''
end

--- The position just past the character at byte `col` (0-based) of `line`, which is row `row` (0-based).
local function after_char(line, row, col)
  return { line = row, character = math.min(col + #vim.fn.strcharpart(line:sub(col + 1), 0, 1), #line) }
end

--- The current window's selections in `bufnr`, as `collab/cursor` ranges (start: the anchor, end: the caret). In
--- Visual mode Neovim's selection includes the characters under both ends; linewise it is whole lines, blockwise
--- one range per line. Otherwise, the caret.
local function selections(bufnr)
  local pos = vim.api.nvim_win_get_cursor(0)
  local caret = { line = pos[1] - 1, character = pos[2] }
  local mode = vim.api.nvim_get_mode().mode:sub(1, 1)
  if mode ~= 'v' and mode ~= 'V' and mode ~= '\22' then
    return { { start = caret, ['end'] = caret } }
  end
  local v = vim.fn.getpos('v')
  local anchor = { line = v[2] - 1, character = v[3] - 1 }
  local forward = caret.line > anchor.line or (caret.line == anchor.line and caret.character >= anchor.character)
  local function line_end(row)
    return { line = row, character = #line_at(bufnr, row) }
  end
  if mode == 'v' then
    if forward then
      return { { start = anchor, ['end'] = after_char(line_at(bufnr, caret.line), caret.line, caret.character) } }
    end
    return { { start = after_char(line_at(bufnr, anchor.line), anchor.line, anchor.character), ['end'] = caret } }
  elseif mode == 'V' then
    if forward then
      return { { start = { line = anchor.line, character = 0 }, ['end'] = line_end(caret.line) } }
    end
    return { { start = line_end(anchor.line), ['end'] = { line = caret.line, character = 0 } } }
  end
  -- Blockwise: the same columns (bytes, as Neovim counts them here) on every line, the caret's line last.
  local ranges = {}
  local first, last = math.min(anchor.character, caret.character), math.max(anchor.character, caret.character)
  local step = caret.line >= anchor.line and 1 or -1
  for row = anchor.line, caret.line, step do
    local line = line_at(bufnr, row)
    local from = { line = row, character = math.min(first, #line) }
    local to = after_char(line, row, math.min(last, #line))
    table.insert(ranges, { start = from, ['end'] = to })
  end
  return ranges
end

--- Tells the daemon where this window's cursor and selections are in `bufnr`, if it is shared.
local function send_cursor(bufnr)
  local tracked = buffer.tracked[bufnr]
  if tracked and vim.api.nvim_get_current_buf() == bufnr then
    -- The edit that moved the cursor goes first, so the daemon places the cursor in the text it is in.
    buffer.flush(bufnr)
    client.notify('collab/cursor', { uri = tracked.uri, ranges = selections(bufnr) })
  end
end

local function watch_buffers()
  vim.api.nvim_clear_autocmds({ group = augroup })
  -- BufWritePost: a buffer whose file was deleted in the session is shared again when written.
  vim.api.nvim_create_autocmd({ 'BufReadPost', 'BufNewFile', 'BufWritePost' }, {
    group = augroup,
    callback = function(args)
      track_if_shared(args.buf)
    end,
  })
  -- `:file {name}` and `:saveas {name}`: the buffer is another file from now on (the old one stays as it was).
  -- What was typed goes to the old file first; then the buffer is shared under its new name, if under the root.
  vim.api.nvim_create_autocmd('BufFilePost', {
    group = augroup,
    callback = function(args)
      if buffer.tracked[args.buf] then
        buffer.flush(args.buf)
        buffer.untrack(args.buf)
      end
      track_if_shared(args.buf)
    end,
  })
  vim.api.nvim_create_autocmd({ 'BufDelete', 'BufWipeout' }, {
    group = augroup,
    callback = function(args)
      buffer.untrack(args.buf)
    end,
  })
  vim.api.nvim_create_autocmd({ 'CursorMoved', 'CursorMovedI' }, {
    group = augroup,
    callback = function(args)
      if state.following and not at_follow_position() then
        stop_following('you moved')
      end
      send_cursor(args.buf)
    end,
  })
  -- Leaving Visual mode leaves the cursor where it is (no CursorMoved): the selection others see goes then.
  vim.api.nvim_create_autocmd('ModeChanged', {
    group = augroup,
    pattern = { '[vV\x16]*:*', '*:[vV\x16]*' },
    callback = function(args)
      send_cursor(args.buf)
    end,
  })
  for _, bufnr in ipairs(vim.api.nvim_list_bufs()) do
    track_if_shared(bufnr)
  end
end

--- Starts the daemon, then sends the share or join `method` for folder `dir` (default: the current directory);
--- on success records the session, tracks shared buffers, and calls `on_success(result, dir)` then `callback`.
local function start_session(method, dir, params, on_success, callback, on_error)
  if not start() then
    return
  end
  dir = vim.fn.fnamemodify(dir or vim.fn.getcwd(), ':p'):gsub('/$', '')
  state.root = dir
  params.root = vim.uri_from_fname(dir)
  client.when_ready(function()
    client.request(method, params, function(err, result)
      if err then
        state.root = nil
        local verb = method:gsub('^collab/', '')
        notify(verb .. ' failed: ' .. (err.message or vim.inspect(err)), vim.log.levels.ERROR)
        if on_error then
          on_error(err)
        end
        return
      end
      state.session = result.session
      state.ready = true
      on_success(result, dir)
      watch_buffers()
      if callback then
        callback(result)
      end
    end)
  end)
end

--- Shows `text` in a small floating window the user can select and yank from (`q` closes it).
local function show_selectable(title, text)
  local buf = vim.api.nvim_create_buf(false, true)
  vim.api.nvim_buf_set_lines(buf, 0, -1, false, { text })
  vim.bo[buf].modifiable = false
  vim.bo[buf].bufhidden = 'wipe'
  local width = math.max(20, math.min(#text, vim.o.columns - 4))
  local win = vim.api.nvim_open_win(buf, true, {
    relative = 'editor',
    row = math.max(0, math.floor((vim.o.lines - 5) / 2)),
    col = math.max(0, math.floor((vim.o.columns - width - 2) / 2)),
    width = width,
    height = math.min(vim.o.lines - 4, math.ceil(#text / width)),
    border = 'rounded',
    title = ' ' .. title .. ' (q closes) ',
    style = 'minimal',
  })
  vim.wo[win].wrap = true
  vim.keymap.set('n', 'q', '<Cmd>close<CR>', { buffer = buf, nowait = true })
  return win
end

--- Gives the user `invite` (`what`: "invite", "view-only invite", "web invite"...): copied to the clipboard when
--- there is one, else shown in a window to select and copy from. `again` is the command that gives it again. The
--- unnamed register is left alone: a `p` meant for something else must not paste an invite into a shared file.
local function hand_over(invite, what, prefix, again)
  again = again or ':CodeCollab invite'
  local copied = vim.fn.has('clipboard') == 1 and pcall(vim.fn.setreg, '+', invite)
  if copied then
    -- Which clipboard (tmux's buffer, xclip, wl-copy, OSC 52...): pasting elsewhere depends on it.
    local ok, tool = pcall(vim.fn['provider#clipboard#Executable'])
    local via = ok and type(tool) == 'string' and tool ~= '' and (' (' .. tool .. ')') or ''
    notify(('%s%s copied to the clipboard%s; %s shows it again'):format(prefix, what, via, again))
  else
    show_selectable('CodeCollab ' .. what, invite)
    notify(
      ('%sno clipboard here: the %s is in the window, to select or yank (yy); %s shows it again'):format(
        prefix,
        what,
        again
      )
    )
  end
end

--- Shares `dir` (default: the current directory).
function M.share(dir, callback)
  local params = { server = config.server(), name = config.values.name, token = config.values.token }
  start_session('collab/share', dir, params, function(result, root)
    state.invite, state.view_invite = result.invite, result.viewInvite
    state.web_invite, state.web_view_invite = result.webInvite, result.webViewInvite
    hand_over(result.invite, 'invite', 'sharing ' .. root .. '. ')
  end, callback)
end

--- The daemon's error code for a join refused because local files differ from the session's.
local JOIN_CONFLICTS = -32010

--- Joins the session of `invite` into `dir` (default: the current directory). A local file that differs from the
--- session's is never overwritten: the join is refused listing them, unless `backup` is set (`:CodeCollab join!`),
--- which moves them into a folder beside `dir` first.
function M.join(invite, dir, callback, backup)
  local params = { invite = invite, name = config.values.name, onConflict = backup and 'backup' or nil }
  start_session('collab/join', dir, params, function(result, root)
    notify(('joined: %d files in %s'):format(#result.files, root))
    local unshared = result.unshared or {}
    if #unshared > 0 then
      local shown = {}
      for i = 1, math.min(#unshared, 5) do
        shown[i] = ('%s (%s)'):format(unshared[i].path, unshared[i].reason)
      end
      notify(
        ('%s not in the session and stay with whoever has them: %s%s'):format(
          #unshared == 1 and '1 file is' or (#unshared .. ' files are'),
          table.concat(shown, ', '),
          #unshared > 5 and ', ...' or ''
        )
      )
    end
    if result.backup then
      notify(
        ('your %d differing files were moved to %s'):format(#result.backup.files, result.backup.folder),
        vim.log.levels.WARN
      )
    end
  end, callback, function(err)
    if err.code == JOIN_CONFLICTS then
      notify(
        ':CodeCollab join! {invite} [dir] moves those files into a backup folder beside it and joins',
        vim.log.levels.WARN
      )
    end
  end)
end

--- Forgets the session here: buffers stop being tracked and become modifiable, remote cursors go.
local function left()
  for bufnr, _ in pairs(buffer.tracked) do
    vim.api.nvim_buf_clear_namespace(bufnr, cursors.ns, 0, -1)
    vim.bo[bufnr].modifiable = true
  end
  buffer.forget_all()
  vim.api.nvim_clear_autocmds({ group = augroup })
  state.session, state.root, state.following, state.follow_at, state.ready = nil, nil, nil, nil, nil
  state.approvals = {}
  state.peers = {}
  status_changed()
end

--- Leaves the session. Edits the server has not acknowledged (typed offline, say) are never dropped silently:
--- `how` nil stays in the session and says which files hold them; 'wait' leaves once the server has them (a
--- later `:CodeCollab leave!` still leaves at once); 'now' leaves at once and says they stay in this folder only.
--- `callback(left)` when done.
function M.leave(how, callback)
  if not state.session then
    notify('not in a session')
    return callback and callback(false)
  end
  for bufnr, _ in pairs(buffer.tracked) do
    buffer.flush(bufnr) -- what the daemon has not seen yet counts too
  end
  local function leave(params, message)
    client.request('collab/leave', params, function(err)
      if err and params.whenSent and not state.session then
        return callback and callback(true) -- left at once meanwhile (:CodeCollab leave!), which said so
      elseif err then
        notify('leave: ' .. (err.message or vim.inspect(err)), vim.log.levels.WARN)
        return callback and callback(false)
      end
      left()
      notify(message)
      return callback and callback(true)
    end)
  end
  client.request('collab/status', {}, function(err, result)
    local unsent = (not err and result and result.unsent) or {}
    local files = table.concat(unsent, ', ')
    if #unsent == 0 then
      return leave({}, 'left the session')
    elseif how == 'now' then
      return leave({}, ('left the session; your edits in %s never reached the server and are in your files only'):format(files))
    elseif how == 'wait' then
      notify(('waiting for the server to take your edits in %s, then leaving (:CodeCollab leave! leaves now)'):format(files))
      return leave({ whenSent = true }, 'every edit reached the server; left the session')
    end
    notify(
      ('still in the session: your edits in %s have not reached the server (%s). :CodeCollab leave wait leaves once they have; :CodeCollab leave! leaves now, keeping them in your files only'):format(
        files,
        state.connection
      ),
      vim.log.levels.WARN
    )
    return callback and callback(false)
  end)
end

--- Writes the files waiting for a yes (`path`, or all of them): others' changes to files that run by themselves.
function M.allow(path)
  local paths = {}
  if path then
    if not state.approvals[path] then
      return notify(('%s is not waiting to be written'):format(path), vim.log.levels.WARN)
    end
    paths = { path }
  else
    paths = vim.tbl_keys(state.approvals)
  end
  if #paths == 0 then
    return notify('no file is waiting to be written')
  end
  for _, p in ipairs(paths) do
    local uri = state.approvals[p]
    state.approvals[p] = nil
    client.request('collab/allow', { uri = uri }, function(err, result)
      if err then
        notify(('%s: %s'):format(p, err.message or vim.inspect(err)), vim.log.levels.ERROR)
      elseif result and result.written then
        notify(('%s written'):format(p))
      else
        notify(('%s: nothing to write (it changed, or was written meanwhile)'):format(p), vim.log.levels.WARN)
      end
    end)
  end
end

--- Removes the peer named `name` from the session (the host only): their connection ends and their invite stops
--- working.
function M.remove(name)
  client.request('collab/removePeer', { name = name }, function(err)
    if err then
      return notify(('could not remove %s: %s'):format(name, err.message or vim.inspect(err)), vim.log.levels.ERROR)
    end
    notify(('%s was removed from the session'):format(name))
  end)
end

--- For a statusline: the connection state, how many others are here (as VS Code's status bar counts them), and
--- whom you follow, e.g. `collab: connected · 2 others · following ben`. Redrawn when any of it changes, and the
--- `User CodeCollabStatus` autocommand fires for statusline plugins.
function M.status()
  if state.connection == 'idle' then
    return ''
  end
  local count = #others()
  local parts = { 'collab: ' .. state.connection, count == 1 and '1 other' or (count .. ' others') }
  if state.following then
    table.insert(parts, 'following ' .. state.following)
  end
  return table.concat(parts, ' · ')
end

local function names_of(peers)
  return table.concat(
    vim.tbl_map(function(p)
      return p.name
    end, peers),
    ', '
  )
end

--- Follows the peer called `name` (the only other one if nil): into the files they open and to their cursor,
--- until you move the cursor or run :CodeCollab unfollow.
function M.follow(name)
  if not state.session then
    return notify('not in a session', vim.log.levels.WARN)
  end
  local candidates = others()
  if not name or name == '' then
    if #candidates ~= 1 then
      return notify(
        #candidates == 0 and 'nobody else is here to follow'
          or ('follow whom? :CodeCollab follow {name}, one of: ' .. names_of(candidates)),
        vim.log.levels.WARN
      )
    end
    name = candidates[1].name
  end
  if not peer_named(name) then
    local here = #candidates == 0 and 'nobody else is here' or ('here: ' .. names_of(candidates))
    return notify(('no one called %s is in the session (%s)'):format(name, here), vim.log.levels.ERROR)
  end
  local pos = vim.api.nvim_win_get_cursor(0)
  state.following = name
  state.follow_at = { buf = vim.api.nvim_get_current_buf(), row = pos[1], col = pos[2] }
  status_changed()
  notify(('following %s (move the cursor or :CodeCollab unfollow to stop)'):format(name))
  follow_step()
end

function M.unfollow()
  if not state.following then
    return notify('not following anyone')
  end
  stop_following()
end

local subcommands =
  { 'share', 'join', 'leave', 'peers', 'follow', 'unfollow', 'invite', 'allow', 'remove', 'undo', 'redo' }

--- Runs `:CodeCollab {args}`; `bang` (`:CodeCollab! join`, also written `:CodeCollab join!`) lets a join move
--- differing local files aside.
function M.command(args, bang)
  local sub = args[1]
  if sub and sub:sub(-1) == '!' then
    sub, bang = sub:sub(1, -2), true
  end
  if sub == 'share' then
    M.share(args[2])
  elseif sub == 'join' then
    if not args[2] then
      return notify('usage: :CodeCollab join[!] {invite} [dir]', vim.log.levels.ERROR)
    end
    M.join(args[2], args[3], nil, bang)
  elseif sub == 'leave' then
    M.leave((bang or args[2] == 'now') and 'now' or (args[2] == 'wait' and 'wait' or nil))
  elseif sub == 'peers' then
    local lines = {}
    for _, peer in ipairs(others()) do
      local where = peer.uri and vim.fn.fnamemodify(vim.uri_to_fname(peer.uri), ':~:.') or ''
      table.insert(lines, ('%s (%s) %s'):format(peer.name, peer.role, where))
    end
    notify(#lines > 0 and table.concat(lines, '\n') or 'nobody else is here')
  elseif sub == 'follow' then
    M.follow(args[2])
  elseif sub == 'unfollow' then
    M.unfollow()
  elseif sub == 'allow' then
    M.allow(args[2])
  elseif sub == 'remove' then
    if not args[2] then
      return notify('usage: :CodeCollab remove {name}', vim.log.levels.ERROR)
    end
    M.remove(args[2])
  elseif sub == 'undo' or sub == 'redo' then
    -- `:undo` and `:redo` for your own changes (`u` and `<C-r>` are mapped in shared buffers).
    local bufnr = vim.api.nvim_get_current_buf()
    if not buffer.tracked[bufnr] then
      return notify('this buffer is not shared: use :' .. sub, vim.log.levels.WARN)
    end
    buffer.undo(bufnr, sub == 'redo', tonumber(args[2]) or 1, function(done)
      if not done then
        notify(sub == 'redo' and 'nothing of yours to redo' or 'nothing of yours to undo')
      end
    end)
  elseif sub == 'invite' then
    -- [view] [web], in either order.
    local view, web = vim.tbl_contains(args, 'view'), vim.tbl_contains(args, 'web')
    local invite
    if web then
      invite = view and state.web_view_invite or state.web_invite
    else
      invite = view and state.view_invite or state.invite
    end
    if not invite or invite == vim.NIL or invite == '' then
      return notify('no invite: only the person who shared has one', vim.log.levels.WARN)
    end
    local what = (view and 'view-only ' or '') .. (web and 'web invite (open it in a browser)' or 'invite')
    local again = ':CodeCollab invite' .. (view and ' view' or '') .. (web and ' web' or '')
    hand_over(invite, what, '', again)
  else
    notify('unknown subcommand; use one of: ' .. table.concat(subcommands, ', '), vim.log.levels.ERROR)
  end
end

function M.complete(arg_lead, cmdline)
  local words = vim.split(cmdline, '%s+', { trimempty = true })
  if #words <= 1 or (#words == 2 and arg_lead ~= '') then
    return vim.tbl_filter(function(s)
      return s:find(arg_lead, 1, true) == 1
    end, subcommands)
  end
  if words[2] == 'follow' or words[2] == 'remove' then
    local names = {}
    for _, peer in ipairs(state.peers) do
      if not peer.you and peer.name:find(arg_lead, 1, true) == 1 then
        table.insert(names, peer.name)
      end
    end
    return names
  end
  if words[2] == 'allow' then
    return vim.tbl_filter(function(p)
      return p:find(arg_lead, 1, true) == 1
    end, vim.tbl_keys(state.approvals))
  end
  if words[2] == 'invite' then
    return vim.tbl_filter(function(w)
      return w:find(arg_lead, 1, true) == 1 and not vim.tbl_contains(words, w)
    end, { 'view', 'web' })
  end
  if words[2] == 'leave' then
    return { 'wait', 'now' }
  end
  return {}
end

return M
