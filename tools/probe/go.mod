module github.com/nl2sql-observability/tools/probe

go 1.24
