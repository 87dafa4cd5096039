"""What a task is: the YAML schema and spec, the catalogue and collections, prompts, class groups, probe plans."""
