from streams.core.orders import INACTIVE_SKU, INSUFFICIENT_STOCK, UNKNOWN_SKU, LineRefusal, StockAnswer, check_lines
from streams.core.sales import SaleLine

STOCK = {
    "A": StockAnswer("A", True, True, 10),
    "B": StockAnswer("B", True, False, 50),
    "C": StockAnswer("C", True, True, 4),
}


def test_lines_with_stock_pass():
    assert check_lines([SaleLine("A", 10), SaleLine("C", 4)], STOCK) == ()


def test_line_reasons_unknown_inactive_short():
    lines = [SaleLine("A", 6), SaleLine("B", 1), SaleLine("Z", 1), SaleLine("A", 5), SaleLine("C", 4)]
    assert check_lines(lines, STOCK) == (
        LineRefusal(1, "A", INSUFFICIENT_STOCK, "line 1: sku A: requested 11, available 10", 11, 10),
        LineRefusal(2, "B", INACTIVE_SKU, "line 2: sku B is not active"),
        LineRefusal(3, "Z", UNKNOWN_SKU, "line 3: sku Z is unknown"),
        LineRefusal(4, "A", INSUFFICIENT_STOCK, "line 4: sku A: requested 11, available 10", 11, 10),
    )


def test_a_sku_without_an_answer_is_unknown():
    assert [r.code for r in check_lines([SaleLine("Q", 1)], {})] == [UNKNOWN_SKU]
