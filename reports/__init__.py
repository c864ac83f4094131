"""What a person sees: the HTML run report, plots, the campaign index, JUnit."""
