--- Remote cursors and selections: extmarks in a namespace of their own, one highlight per peer colour, the peer's
--- name as virtual text at the caret. Extmarks move with the text between updates.
local M = {}

M.ns = vim.api.nvim_create_namespace('codecollab_cursors')
--- uri -> list of { peer, name, color, ranges } as last received
M.by_uri = {}

local function highlight(color)
  local name = 'CodeCollabPeer' .. color:gsub('#', '')
  if vim.fn.hlexists(name) == 0 then
    vim.api.nvim_set_hl(0, name, { bg = color, fg = '#ffffff', default = true })
    vim.api.nvim_set_hl(0, name .. 'Sel', { bg = color, blend = 70, default = true })
  end
  return name
end

local function clamp(bufnr, row, col)
  local count = vim.api.nvim_buf_line_count(bufnr)
  if row >= count then
    row = count - 1
    col = #(vim.api.nvim_buf_get_lines(bufnr, row, row + 1, false)[1] or '')
  end
  local line = vim.api.nvim_buf_get_lines(bufnr, row, row + 1, false)[1] or ''
  return row, math.min(col, #line)
end

function M.draw(bufnr, cursors)
  vim.api.nvim_buf_clear_namespace(bufnr, M.ns, 0, -1)
  for _, cursor in ipairs(cursors) do
    local hl = highlight(cursor.color)
    for _, range in ipairs(cursor.ranges) do
      local srow, scol = clamp(bufnr, range.start.line, range.start.character)
      local erow, ecol = clamp(bufnr, range['end'].line, range['end'].character)
      if srow ~= erow or scol ~= ecol then
        local a_row, a_col, b_row, b_col = srow, scol, erow, ecol
        if b_row < a_row or (b_row == a_row and b_col < a_col) then
          a_row, a_col, b_row, b_col = erow, ecol, srow, scol
        end
        vim.api.nvim_buf_set_extmark(bufnr, M.ns, a_row, a_col, { end_row = b_row, end_col = b_col, hl_group = hl .. 'Sel' })
      end
      -- The caret is the range's end (its head); the name sits there.
      vim.api.nvim_buf_set_extmark(bufnr, M.ns, erow, ecol, {
        virt_text = { { ' ' .. cursor.name .. ' ', hl } },
        virt_text_pos = 'inline',
        right_gravity = false,
      })
    end
  end
end

--- A peer's caret in `uri`, as (row, col), if known.
function M.caret_of(uri, name)
  for _, cursor in ipairs(M.by_uri[uri] or {}) do
    if cursor.name == name and cursor.ranges[1] then
      local head = cursor.ranges[1]['end']
      return head.line, head.character
    end
  end
end

return M
