"""What a person reads about runs: rich terminal tables, the HTML report and the data it
gathers (from runs, predictions, doctor and label checks), and the runs list."""
