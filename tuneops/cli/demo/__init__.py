"""`make demo`: the whole loop on the embedded default, one typed state from step to step.

``state.DemoState`` is what the steps know of each other: each step in ``steps/`` is a function
``run(state) -> state`` that reads what it needs, does its part through the areas' own APIs,
and returns a new state with what it produced and the lines it adds to the closing report.
``runner.run_demo`` runs them in order and prints the report with each step's time.
"""
