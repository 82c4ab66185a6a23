"""A LangGraph SQL-agent app that knows nothing of observability (no import of nl2sql_observability,
no OpenTelemetry call). Tests run it under `opentelemetry-instrument` and look at what arrives.

    python sql_agent_app.py --requests 6 --summary-json out.json

Request i is asked by tenant TENANTS[i % 2] in session `req-i`; every third request first generates a
broken query that the check_query node rejects. The summary holds the app's own counts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sql_agent import build, make_db, question, script

TENANTS = ("acme", "globex")
SQL = "SELECT count(*) FROM orders WHERE status = 'cancelled'"
log = logging.getLogger("sql_agent_app")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=6)
    parser.add_argument("--summary-json", type=Path, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    conn = make_db()
    tokens: dict[str, int] = {}
    validations = {"passed": 0, "failed": 0}
    for i in range(args.requests):
        tenant = TENANTS[i % len(TENANTS)]
        bad_first = i % 3 == 0
        replies = list(script(SQL, bad_first=bad_first))
        tokens[tenant] = tokens.get(tenant, 0) + sum(
            m.usage_metadata["total_tokens"] for m in replies if m.usage_metadata
        )
        validations["failed" if bad_first else "passed"] += 1
        if bad_first:
            validations["passed"] += 1  # the retried query passes
        app = build(conn, iter(replies))
        config = {"configurable": {"thread_id": f"req-{i}", "tenant_id": tenant, "user_id": f"user-{i}"}}
        log.info("question %d for %s", i, tenant)
        await app.ainvoke(question(), config=config)
    args.summary_json.write_text(json.dumps({"tokens": tokens, "validations": validations}))


if __name__ == "__main__":
    asyncio.run(main())
