"""Orchestration: the LangGraph graphs and the programs that run them.

`article` (one article's plan), `daily` (collect, fan out, trends, publish), `runtime` (how
nodes dispatch Celery tasks and await results), `run_daily` and `search` (command lines),
`orchestrate` (the Beat-triggered task that runs the daily graph). Graphs import tasks and
vectorstore; nothing imports graphs except its own programs.
"""
