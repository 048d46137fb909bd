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
  peers = {},
  following = nil, -- name of the peer being followed
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

local function follow_step()
  if not state.following then
    return
  end
  for uri, _ in pairs(cursors.by_uri) do
    local row, col = cursors.caret_of(uri, state.following)
    if row then
      local bufnr = buffer.bufnr_for(uri)
      if bufnr then
        if vim.api.nvim_get_current_buf() ~= bufnr then
          vim.api.nvim_set_current_buf(bufnr)
        end
        state.moving = true
        pcall(vim.api.nvim_win_set_cursor, 0, { row + 1, col })
        state.moving = false
      end
      return
    end
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
    vim.cmd('redrawstatus')
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

local function watch_buffers()
  vim.api.nvim_clear_autocmds({ group = augroup })
  vim.api.nvim_create_autocmd({ 'BufReadPost', 'BufNewFile' }, {
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
      if state.following and not state.moving then
        state.following = nil -- the user moved: stop following
      end
      local tracked = buffer.tracked[args.buf]
      if tracked then
        local pos = vim.api.nvim_win_get_cursor(0)
        local caret = { line = pos[1] - 1, character = pos[2] }
        client.notify('collab/cursor', { uri = tracked.uri, ranges = { { start = caret, ['end'] = caret } } })
      end
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
      on_success(result, dir)
      watch_buffers()
      if callback then
        callback(result)
      end
    end)
  end)
end

--- Shares `dir` (default: the current directory).
function M.share(dir, callback)
  local params = { server = config.server(), name = config.values.name, token = config.values.token }
  start_session('collab/share', dir, params, function(result, root)
    state.invite, state.view_invite = result.invite, result.viewInvite
    vim.fn.setreg('+', result.invite)
    vim.fn.setreg('"', result.invite)
    notify('sharing ' .. root .. '. Invite copied to the clipboard (view-only: :CodeCollab invite view)')
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

function M.leave()
  for bufnr, _ in pairs(buffer.tracked) do
    vim.api.nvim_buf_clear_namespace(bufnr, cursors.ns, 0, -1)
    vim.bo[bufnr].modifiable = true
  end
  buffer.tracked = {}
  client.request('collab/leave', {}, function() end)
  vim.api.nvim_clear_autocmds({ group = augroup })
  state.session, state.root, state.following = nil, nil, nil
  state.approvals = {}
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

--- For a statusline: the connection state and the number of peers.
function M.status()
  if state.connection == 'idle' then
    return ''
  end
  return ('collab: %s (%d)'):format(state.connection, #state.peers)
end

function M.follow(name)
  state.following = name
  follow_step()
end

local subcommands = { 'share', 'join', 'leave', 'peers', 'follow', 'invite', 'allow', 'remove' }

--- Runs `:CodeCollab {args}`; `bang` (`:CodeCollab! join`, also written `:CodeCollab join!`) lets a join move
--- differing local files aside.
function M.command(args, bang)
  local sub = args[1]
  if sub == 'join!' then
    sub, bang = 'join', true
  end
  if sub == 'share' then
    M.share(args[2])
  elseif sub == 'join' then
    if not args[2] then
      return notify('usage: :CodeCollab join[!] {invite} [dir]', vim.log.levels.ERROR)
    end
    M.join(args[2], args[3], nil, bang)
  elseif sub == 'leave' then
    M.leave()
  elseif sub == 'peers' then
    local lines = {}
    for _, peer in ipairs(state.peers) do
      local where = peer.uri and vim.fn.fnamemodify(vim.uri_to_fname(peer.uri), ':~:.') or ''
      table.insert(lines, ('%s (%s) %s'):format(peer.name, peer.role, where))
    end
    notify(#lines > 0 and table.concat(lines, '\n') or 'nobody else is here')
  elseif sub == 'follow' then
    M.follow(args[2])
  elseif sub == 'allow' then
    M.allow(args[2])
  elseif sub == 'remove' then
    if not args[2] then
      return notify('usage: :CodeCollab remove {name}', vim.log.levels.ERROR)
    end
    M.remove(args[2])
  elseif sub == 'invite' then
    local invite = args[2] == 'view' and state.view_invite or state.invite
    if not invite then
      return notify('no invite: only the person who shared has one', vim.log.levels.WARN)
    end
    vim.fn.setreg('+', invite)
    vim.fn.setreg('"', invite)
    notify('invite copied')
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
    return { 'view' }
  end
  return {}
end

return M
