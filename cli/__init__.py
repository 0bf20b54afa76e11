"""The `unlearn` command line: floor 3, over the API, the workers and the library."""
