"""Questions the simulated LLM knows, their correct SQL, and SQL that genuinely fails validation."""

from __future__ import annotations

from typing import Final

__all__ = ["BROKEN_SQL", "FAILURE_KINDS", "FALLBACK_SQL", "QUESTIONS", "RUNTIME_FAILURES", "RUNTIME_SQL"]

QUESTIONS: Final[dict[str, str]] = {
    "How many customers do we have per country?": (
        "SELECT country, COUNT(*) AS customers FROM customers GROUP BY country "
        "ORDER BY customers DESC, country"
    ),
    "What are the top 5 products by revenue?": (
        "SELECT p.name, ROUND(SUM(oi.quantity * oi.unit_price), 2) AS revenue FROM order_items AS oi "
        "JOIN products AS p ON p.id = oi.product_id GROUP BY p.name ORDER BY revenue DESC, p.name LIMIT 5"
    ),
    "How many orders were cancelled?": "SELECT COUNT(*) AS cancelled FROM orders WHERE status = 'cancelled'",
    "What is the revenue per product category?": (
        "SELECT p.category, ROUND(SUM(oi.quantity * oi.unit_price), 2) AS revenue FROM order_items AS oi "
        "JOIN products AS p ON p.id = oi.product_id GROUP BY p.category ORDER BY revenue DESC"
    ),
    "Which 5 customers placed the most orders?": (
        "SELECT c.name, COUNT(o.id) AS orders FROM customers AS c JOIN orders AS o ON o.customer_id = c.id "
        "GROUP BY c.id, c.name ORDER BY orders DESC, c.id LIMIT 5"
    ),
    "What is the average order value?": (
        "SELECT ROUND(AVG(t.total), 2) AS average_order_value FROM (SELECT oi.order_id, "
        "SUM(oi.quantity * oi.unit_price) AS total FROM order_items AS oi GROUP BY oi.order_id) AS t"
    ),
    "How many orders were placed per month?": (
        "SELECT SUBSTR(order_date, 1, 7) AS month, COUNT(*) AS orders FROM orders "
        "GROUP BY month ORDER BY month"
    ),
    "Which customer segment spends the most?": (
        "SELECT c.segment, ROUND(SUM(oi.quantity * oi.unit_price), 2) AS spend FROM customers AS c "
        "JOIN orders AS o ON o.customer_id = c.id JOIN order_items AS oi ON oi.order_id = o.id "
        "GROUP BY c.segment ORDER BY spend DESC"
    ),
    "What is the most expensive product price in each category?": (
        "SELECT category, MAX(price) AS max_price FROM products GROUP BY category ORDER BY category"
    ),
    "How many enterprise customers are in Germany?": (
        "SELECT COUNT(*) AS customers FROM customers WHERE segment = 'enterprise' AND country = 'DE'"
    ),
    "How many orders were returned per country?": (
        "SELECT c.country, COUNT(*) AS returned FROM orders AS o JOIN customers AS c ON c.id = o.customer_id "
        "WHERE o.status = 'returned' GROUP BY c.country ORDER BY returned DESC, c.country"
    ),
    "Which products were never ordered?": (
        "SELECT p.name FROM products AS p WHERE p.id NOT IN (SELECT oi.product_id FROM order_items AS oi) "
        "ORDER BY p.name"
    ),
    # Questions the data has no answer for: the SQL is right, the result is empty.
    "Which orders were placed in 1999?": (
        "SELECT o.id, o.order_date FROM orders AS o WHERE o.order_date LIKE '1999-%' ORDER BY o.id"
    ),
    "Which customers are in Antarctica?": (
        "SELECT c.name FROM customers AS c WHERE c.country = 'AQ' ORDER BY c.name"
    ),
}

# What the simulated LLM answers for a question it does not know.
FALLBACK_SQL: Final = "SELECT COUNT(*) AS orders, COUNT(DISTINCT customer_id) AS customers FROM orders"

FAILURE_KINDS: Final = ("unknown_column", "syntax_error", "forbidden_write")

# SQL a confused model produces; each fails validation with the error type it is filed under.
BROKEN_SQL: Final[dict[str, tuple[str, ...]]] = {
    "unknown_column": (
        "SELECT revenue FROM orders",
        "SELECT c.email FROM customers AS c",
        "SELECT p.name, p.stock FROM products AS p ORDER BY p.stock",
    ),
    "syntax_error": (
        "SELEC name FROM customers",
        "SELECT name FROM customers WHERE",
        "SELECT country, COUNT(* FROM customers GROUP BY country",
    ),
    "forbidden_write": (
        "DELETE FROM orders WHERE status = 'cancelled'",
        "UPDATE products SET price = 0",
        "DROP TABLE customers",
    ),
}

# Failures past validation (`--error-rate`): SQL the validator passes but the database refuses, a query
# that runs past the app's deadline, a provider that fails the chat call.
RUNTIME_FAILURES: Final = ("sql_error", "timeout", "llm_error")
RUNTIME_SQL: Final[dict[str, str]] = {
    "sql_error": "SELECT abs(-9223372036854775807 - 1) AS overflow FROM orders LIMIT 1",
    "timeout": "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n) SELECT COUNT(*) AS c FROM n",
}
