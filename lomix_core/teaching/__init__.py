"""What a student sees: chapter start-up, generated findings and claims tables, plots and widgets, the series' report, Colab guidance."""
