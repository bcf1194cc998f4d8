"""Settings and error types shared by graphs, tasks and vectorstore."""
