--- The connection to codecollab-daemon: started with Neovim's LSP client (positions in UTF-8, Neovim's bytes),
--- the daemon's notifications dispatched to the buffer, cursor and status modules.
local config = require('codecollab.config')

local M = {}

--- The running client, if any.
M.client = nil
--- The editor protocol this plugin speaks (the daemon announces its own in `initialize`).
M.EDITOR_PROTOCOL = 2
--- Why the daemon was refused, if it was too old for this plugin.
M.too_old = nil

local has_011 = vim.fn.has('nvim-0.11') == 1

local function call(method_name, ...)
  local client = M.client
  if not client then
    return nil
  end
  if has_011 then
    return client[method_name](client, ...)
  end
  return client[method_name](...)
end

function M.request(method, params, callback)
  return call('request', method, params, function(err, result)
    callback(err, result)
  end)
end

--- Sends a notification straight on the connection. `Client:notify` would also flush LSP document sync (this
--- client syncs no buffer: `collab/edit` is its own) and schedule an `LspNotify` autocommand per message, which
--- converts the whole message for Vimscript: on every keystroke, for nothing.
function M.notify(method, params)
  local client = M.client
  if client and client.rpc then
    return client.rpc.notify(method, params)
  end
  return call('notify', method, params)
end

--- Callbacks waiting for the daemon to finish initializing.
local waiting = {}
local ready = false

--- Runs `callback` once the daemon is initialized (at once if it is).
function M.when_ready(callback)
  if ready then
    callback()
  else
    table.insert(waiting, callback)
  end
end

--- Starts the daemon if it is not running; returns the client or nil and an error.
function M.ensure(handlers)
  if M.client and not M.client:is_stopped() then
    return M.client
  end
  ready = false
  local daemon = config.daemon()
  if daemon == nil or daemon == '' or vim.fn.executable(daemon) ~= 1 then
    return nil,
      'codecollab-daemon not found: build it in the plugin\'s checkout (cargo build --release -p codecollab-daemon), or put it on PATH, or set `daemon` in setup(); :checkhealth codecollab says where it looked'
  end
  local capabilities = vim.lsp.protocol.make_client_capabilities()
  capabilities.general = capabilities.general or {}
  capabilities.general.positionEncodings = { 'utf-8' }
  local lsp_config = {
    name = 'codecollab',
    cmd = { daemon },
    root_dir = vim.fn.getcwd(),
    capabilities = capabilities,
    init_options = { allowRunnableFiles = config.values.allow_runnable_files == true },
    offset_encoding = 'utf-8',
    handlers = handlers,
    on_init = function(client)
      -- A daemon older than this plugin lacks what the plugin sends and expects: say so, and do not go on.
      local speaks = vim.tbl_get(client.server_capabilities or {}, 'experimental', 'codecollab', 'editorProtocol') or 1
      if speaks < M.EDITOR_PROTOCOL then
        local version = (client.server_info or {}).version or 'unknown version'
        M.too_old = ('%s (codecollab-daemon %s) is too old for this plugin: it speaks editor protocol %d, the plugin needs %d. Update it: cargo build --release -p codecollab-daemon in the plugin\'s checkout, or the release tarball'):format(
          daemon,
          version,
          speaks,
          M.EDITOR_PROTOCOL
        )
        vim.schedule(function()
          vim.notify('CodeCollab: ' .. M.too_old, vim.log.levels.ERROR)
          M.stop()
        end)
        waiting = {}
        return
      end
      ready = true
      local callbacks = waiting
      waiting = {}
      for _, callback in ipairs(callbacks) do
        vim.schedule(callback)
      end
    end,
    on_exit = function()
      M.client = nil
      ready = false
    end,
  }
  local id
  if has_011 then
    id = vim.lsp.start(lsp_config, { attach = false })
  else
    id = vim.lsp.start_client(lsp_config)
  end
  if not id then
    return nil, 'could not start ' .. daemon
  end
  M.client = vim.lsp.get_client_by_id(id)
  return M.client
end

function M.stop()
  if M.client then
    M.client:stop()
    M.client = nil
  end
end

return M
