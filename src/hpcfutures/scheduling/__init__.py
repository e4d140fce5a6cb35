"""Pure scheduling state: tasks, their resources, dependencies and the core budget.
No sockets and no processes here, so every rule can be tested on its own."""
