"""Reports: win rates against a baseline (`wins`), the paper's Table 2 layout (`table2`), the persona-fit section and scatter (`fit_report`), and the Markdown and plotly report (`report`)."""
