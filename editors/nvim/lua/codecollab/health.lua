--- :checkhealth codecollab — Neovim version, the daemon (found and answering --version), the server reachable.
local config = require('codecollab.config')

local M = {}

function M.check()
  local health = vim.health
  health.start('codecollab')
  if vim.fn.has('nvim-0.10') == 1 then
    health.ok('Neovim ' .. tostring(vim.version()))
  else
    health.error('Neovim 0.10 or later is required', { 'upgrade Neovim' })
  end
  local daemon = config.daemon()
  if daemon == nil or daemon == '' or vim.fn.executable(daemon) ~= 1 then
    local looked = config.values.daemon and { config.values.daemon } or config.daemon_candidates()
    health.error('codecollab-daemon not found (looked in: ' .. table.concat(looked, ', ') .. ')', {
      'build it in the plugin\'s checkout: cargo build --release -p codecollab-daemon (lazy.nvim: the `build` step in the README does it)',
      'or put a codecollab-daemon on $PATH, or call require("codecollab").setup({ daemon = "/path/to/codecollab-daemon" })',
    })
  else
    local result = vim.system({ daemon, '--version' }, { text = true }):wait(5000)
    if result.code == 0 then
      health.ok(('daemon: %s (%s)'):format(vim.trim(result.stdout), daemon))
    else
      health.error(('%s --version failed (exit %s): %s'):format(daemon, tostring(result.code), result.stderr or ''), {
        'reinstall the daemon',
      })
    end
  end
  local server = config.server()
  local host, port = server:match('^wss?://%[?([^%]/]+)%]?:(%d+)')
  if not host then
    host = server:match('^wss?://([^:/]+)')
    port = server:match('^wss://') and '443' or '80'
  end
  if not host then
    return health.error('server address not understood: ' .. server, { 'use ws://HOST:PORT or wss://HOST:PORT' })
  end
  local ok = false
  local done = false
  local tcp = vim.uv.new_tcp()
  local addresses = vim.uv.getaddrinfo(host, port, { socktype = 'stream' }) or {}
  if addresses[1] then
    tcp:connect(addresses[1].addr, addresses[1].port, function(err)
      ok = err == nil
      done = true
    end)
    vim.wait(3000, function()
      return done
    end, 20)
  end
  tcp:close()
  if ok then
    health.ok('server reachable: ' .. server)
  else
    health.warn('server not reachable: ' .. server, {
      'start one: cargo run --release -p codecollab-server',
      'or set `server` in setup(), or CODECOLLAB_SERVER',
    })
  end
end

return M
