--- Remote cursors and selections: extmarks in a namespace of their own. A peer's caret is the character cell it
--- sits on, in the peer's colour; the peer's name is a label in that colour at the end of the line, so it never
--- shifts the text or reads as part of it. Colours work with and without 'termguicolors' (the nearest of the
--- terminal's 256 colours). Extmarks move with the text between updates.
local M = {}

M.ns = vim.api.nvim_create_namespace('codecollab_cursors')
--- uri -> list of { peer, name, color, ranges } as last received
M.by_uri = {}

--- The xterm 256-colour palette's levels for its 6x6x6 cube.
local CUBE = { 0, 95, 135, 175, 215, 255 }

--- The xterm 256-colour index nearest to `r, g, b` (from the 6x6x6 cube or the grey ramp).
function M.cterm(r, g, b)
  local function nearest_level(v)
    local best, index = math.huge, 0
    for i, level in ipairs(CUBE) do
      if math.abs(level - v) < best then
        best, index = math.abs(level - v), i - 1
      end
    end
    return index
  end
  local ri, gi, bi = nearest_level(r), nearest_level(g), nearest_level(b)
  local cube = 16 + 36 * ri + 6 * gi + bi
  local cube_dist = (CUBE[ri + 1] - r) ^ 2 + (CUBE[gi + 1] - g) ^ 2 + (CUBE[bi + 1] - b) ^ 2
  local grey_step = math.max(0, math.min(23, math.floor(((r + g + b) / 3 - 8) / 10 + 0.5)))
  local grey = 8 + 10 * grey_step
  local grey_dist = (grey - r) ^ 2 + (grey - g) ^ 2 + (grey - b) ^ 2
  return grey_dist < cube_dist and 232 + grey_step or cube
end

--- The highlight group of peer colour `color` (`#rrggbb`, anything else is grey), defined on first use: the caret
--- and label group, and `…Sel` for selections. `default`, so a colour scheme or the user can restyle them.
local function highlight(color)
  if not color:match('^#%x%x%x%x%x%x$') then
    color = '#888888'
  end
  local name = 'CodeCollabPeer' .. color:sub(2)
  if vim.fn.hlexists(name) == 0 then
    local r, g, b = tonumber(color:sub(2, 3), 16), tonumber(color:sub(4, 5), 16), tonumber(color:sub(6, 7), 16)
    local dark = (0.299 * r + 0.587 * g + 0.114 * b) < 150
    local fg, ctermfg = dark and '#ffffff' or '#000000', dark and 15 or 0
    local ctermbg = M.cterm(r, g, b)
    vim.api.nvim_set_hl(0, name, { bg = color, fg = fg, ctermbg = ctermbg, ctermfg = ctermfg, default = true })
    vim.api.nvim_set_hl(0, name .. 'Sel', { bg = color, blend = 70, ctermbg = ctermbg, ctermfg = ctermfg, default = true })
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
  return row, math.min(col, #line), line
end

--- Byte length of the UTF-8 character starting at byte `col` (0-based) of `line`.
local function char_len(line, col)
  local byte = line:byte(col + 1) or 0
  return byte >= 0xF0 and 4 or byte >= 0xE0 and 3 or byte >= 0xC0 and 2 or 1
end

function M.draw(bufnr, cursors)
  vim.api.nvim_buf_clear_namespace(bufnr, M.ns, 0, -1)
  for _, cursor in ipairs(cursors) do
    local hl = highlight(cursor.color)
    for i, range in ipairs(cursor.ranges) do
      local srow, scol = clamp(bufnr, range.start.line, range.start.character)
      local erow, ecol, line = clamp(bufnr, range['end'].line, range['end'].character)
      if srow ~= erow or scol ~= ecol then
        local a_row, a_col, b_row, b_col = srow, scol, erow, ecol
        if b_row < a_row or (b_row == a_row and b_col < a_col) then
          a_row, a_col, b_row, b_col = erow, ecol, srow, scol
        end
        vim.api.nvim_buf_set_extmark(bufnr, M.ns, a_row, a_col, { end_row = b_row, end_col = b_col, hl_group = hl .. 'Sel' })
      end
      -- The caret is the range's end (its head): the cell it is on takes the colour; past the end of the line, a
      -- coloured cell is drawn over the empty space. Neither moves a character.
      if ecol < #line then
        vim.api.nvim_buf_set_extmark(bufnr, M.ns, erow, ecol, {
          end_col = ecol + char_len(line, ecol),
          hl_group = hl,
          priority = 200,
        })
      else
        vim.api.nvim_buf_set_extmark(bufnr, M.ns, erow, ecol, { virt_text = { { ' ', hl } }, virt_text_pos = 'overlay' })
      end
      -- The name, once per peer, at the end of the caret's line.
      if i == 1 then
        vim.api.nvim_buf_set_extmark(bufnr, M.ns, erow, 0, {
          virt_text = { { ' ' .. cursor.name .. ' ', hl } },
          virt_text_pos = 'eol',
        })
      end
    end
  end
end

--- The caret of peer `id` in `uri`, as (row, col), if known.
function M.caret_of(uri, id)
  for _, cursor in ipairs(M.by_uri[uri] or {}) do
    if cursor.peer == id and cursor.ranges[1] then
      local head = cursor.ranges[1]['end']
      return head.line, head.character
    end
  end
end

return M
