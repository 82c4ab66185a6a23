"""The demo NL2SQL app: a LangGraph graph over a SQLite sample database with a simulated LLM.

Needs the `demo` extra (langgraph, langchain-core, sqlglot, rich). Run it with
`opentelemetry-instrument nl2sql-obs demo` (or plain `nl2sql-obs demo`, which configures itself).
"""
