"""The middle: the hub's routing core, sessions, the reverse path, the era bridge, tasks and instructions."""
