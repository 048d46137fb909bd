--- CodeCollab for Neovim: registers the :CodeCollab command (everything else loads on first use).
if vim.g.loaded_codecollab then
  return
end
vim.g.loaded_codecollab = true

vim.api.nvim_create_user_command('CodeCollab', function(opts)
  require('codecollab').command(opts.fargs, opts.bang)
end, {
  nargs = '+',
  bang = true,
  complete = function(arg_lead, cmdline)
    return require('codecollab').complete(arg_lead, cmdline)
  end,
  desc = 'CodeCollab: share, join, leave, peers, follow, invite, allow, remove',
})
