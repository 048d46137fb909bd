--- CodeCollab's configuration: defaults, and validation of what setup() is given.
local M = {}

M.defaults = {
  -- The daemon binary; nil means `codecollab-daemon` on PATH.
  daemon = nil,
  -- The server for `:CodeCollab share`; nil means $CODECOLLAB_SERVER, then ws://127.0.0.1:7830.
  server = nil,
  -- Your name as others see it; nil means $USER.
  name = nil,
  -- A host token, needed to share on a server that does not listen on loopback.
  token = nil,
  -- Write other people's changes to files that editors or shells run by themselves (.vscode/*, .nvim.lua,
  -- .exrc, .envrc, ...) without asking. Off: each change waits for :CodeCollab allow.
  allow_runnable_files = false,
  -- What `u` and `<C-r>` take back in a shared buffer: 'own' (your own changes only, everyone else's stay) or
  -- 'all' (Neovim's own undo: the most recent change, whoever made it).
  undo = 'own',
}

M.values = vim.deepcopy(M.defaults)

local function optional(kind)
  return function(value)
    return value == nil or type(value) == kind, 'a ' .. kind .. ' or nil'
  end
end

--- Validates `opts` against the schema and merges it over the defaults; errors name the bad key.
function M.setup(opts)
  opts = opts or {}
  vim.validate('opts', opts, 'table')
  local schema = {
    daemon = optional('string'),
    server = optional('string'),
    name = optional('string'),
    token = optional('string'),
    allow_runnable_files = optional('boolean'),
    undo = function(value)
      return value == nil or value == 'own' or value == 'all', "'own' or 'all'"
    end,
  }
  for key, value in pairs(opts) do
    local check = schema[key]
    if not check then
      error(('codecollab.setup: unknown option %q'):format(key))
    end
    local ok, expected = check(value)
    if not ok then
      error(('codecollab.setup: option %q must be %s'):format(key, expected))
    end
  end
  M.values = vim.tbl_extend('force', vim.deepcopy(M.defaults), opts)
  return M.values
end

--- The daemon command, from the configuration, else PATH.
--- This plugin's folder (editors/nvim in a checkout of the repository, or the unpacked release tarball).
local plugin_root = vim.fn.fnamemodify(debug.getinfo(1, 'S').source:sub(2), ':p:h:h:h')

--- Where the daemon is looked for when setup() names none, in order: beside the plugin (the release tarball's bin/,
--- built for this very plugin), $PATH (an install of your own), then built in the plugin's own checkout
--- (`cargo build --release -p codecollab-daemon`, which lazy.nvim's `build` step runs; a debug build last).
--- '$PATH' stands for the search of $PATH.
function M.daemon_candidates()
  local checkout = vim.fn.fnamemodify(plugin_root .. '/../..', ':p'):gsub('/$', '')
  return {
    plugin_root .. '/bin/codecollab-daemon',
    '$PATH',
    checkout .. '/target/release/codecollab-daemon',
    checkout .. '/target/debug/codecollab-daemon',
  }
end

--- The daemon to run: setup()'s `daemon`, else the first of daemon_candidates() that is there ('' if none).
function M.daemon()
  if M.values.daemon then
    return M.values.daemon
  end
  for _, path in ipairs(M.daemon_candidates()) do
    local found = path == '$PATH' and vim.fn.exepath('codecollab-daemon') or path
    if found ~= '' and vim.fn.executable(found) == 1 then
      return found
    end
  end
  return ''
end

function M.server()
  return M.values.server or vim.env.CODECOLLAB_SERVER or 'ws://127.0.0.1:7830'
end

return M
