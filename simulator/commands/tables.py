"""Tables that fit the terminal: at a narrow width (80 columns) a wide table drops its borders, then its cell
padding, and, where rich alone would shrink the widest columns first and cut numbers to ellipses, shares the width
so that no column is cut below its longest word or number; headers wrap at their spaces."""

from __future__ import annotations

from rich import box
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

_WIDE = Console(width=100_000)  # measures a table's narrowest layout without a terminal's cap


def cell_widths(table: Table) -> list[tuple[int, int]]:
    """Each column's (narrowest, widest) cell, header included, without padding (characters); a column that does
    not wrap is as wide as its widest cell (rich measures its narrowest as its longest word, then cuts it to fit).
    Measured once: borders and padding change below, the cells do not (measuring a column renders every cell)."""
    widths = []
    for column in table.columns:
        low, high = table._measure_column(_WIDE, _WIDE.options, column)
        padding = table._get_padding_width(column._index)
        widths.append(((high if column.no_wrap else low) - padding, high - padding))
    return widths


def column_range(table: Table, column, cells: list[tuple[int, int]]) -> tuple[int, int]:
    """A column's (narrowest, widest) width with the table's padding now (``cells``: :func:`cell_widths`)."""
    padding = table._get_padding_width(column._index)
    low, high = cells[column._index]
    return low + padding, high + padding


def min_width(table: Table, cells: list[tuple[int, int]] | None = None) -> int:
    """The narrowest a table prints without cutting a word or a number (characters)."""
    cells = cells or cell_widths(table)
    return sum(column_range(table, c, cells)[0] for c in table.columns) + table._extra_width


def fit_width(table: Table, width: int) -> Table:
    """Make ``table`` print within ``width`` characters if a lighter style allows it: first without borders
    (a rule under the header only), then without cell padding (one space between columns); then give each
    column at least its narrowest width and share the rest in proportion to what each could use. Where even
    that does not fit, rich shrinks the widest columns, whose words then fold rather than being cut. Edits in
    place."""
    if not table.show_header:
        return table  # a key-value list (no header) wraps its values well as it is
    cells = cell_widths(table)
    if table.width is None and table.min_width is None:  # as rich measures it: every column at its widest
        widest = sum(column_range(table, c, cells)[1] for c in table.columns) + table._extra_width
    else:
        widest = Measurement.get(_WIDE, _WIDE.options, table).maximum
    if widest <= width:
        return table
    if min_width(table, cells) > width:
        table.box, table.show_edge, table.pad_edge = box.SIMPLE_HEAD, False, False
    if min_width(table, cells) > width:
        table.padding = (0, 0)
    if min_width(table, cells) > width:  # the widest columns shrink first (rich), and fold their words rather than cut
        for column in table.columns:
            column.no_wrap, column.overflow = False, "fold"
            if isinstance(column.header, str):
                column.header = Text(column.header, overflow="fold")
        return table
    if _cuts(table, width, cells):
        _share_widths(table, width, cells)
    return table


def _cuts(table: Table, width: int, cells: list[tuple[int, int]]) -> bool:
    """Whether rich's own layout at ``width`` would give some column less than its narrowest (a cut cell)."""
    console = Console(width=width)
    widths = table._calculate_column_widths(console, console.options.update_width(width - table._extra_width))
    return any(w < column_range(table, c, cells)[0] for w, c in zip(widths, table.columns)
               if c.overflow != "fold")  # a folding column breaks its long words: nothing is cut


def _share_widths(table: Table, width: int, cells: list[tuple[int, int]]) -> None:
    """Fix each flexible column's width: its minimum plus a share of the spare room by its (maximum − minimum)."""
    flexible = [c for c in table.columns if c.width is None]
    ranges = {id(c): column_range(table, c, cells) for c in flexible}
    fixed = sum(column_range(table, c, cells)[1] for c in table.columns if c.width is not None)
    room = width - table._extra_width - fixed
    mins = [ranges[id(c)][0] for c in flexible]
    slack = [ranges[id(c)][1] - ranges[id(c)][0] for c in flexible]
    spare = room - sum(mins)
    if spare < 0 or not flexible:
        return
    total = sum(slack) or 1
    for column, low, more in zip(flexible, mins, slack):
        column.width = low + min(more, spare * more // total) - table._get_padding_width(column._index)


class FittingConsole(Console):
    """A rich console whose ``print`` fits every table to its width (:func:`fit_width`)."""

    def print(self, *objects, **kwargs) -> None:
        for obj in objects:
            if isinstance(obj, Table):
                fit_width(obj, self.width)
        super().print(*objects, **kwargs)
