"""The design's recipes, proven (tests/test_recipes.py): a model, a task and an optimizer each
added as one .py file here plus its config file under conf/, found through
`hydra.searchpath=[file://tests/recipes/conf]`. Not shipped."""
