"""The page's tabs, one module each: its layout (`build`), its events (`wire`) and its handlers.

`compare` (the lab: personas, query, methods, live panels), `did_it_work` (answers side by side,
fit heatmap, the front), `infer` (persona inference from example pairs), `capacity` (judge
capacity), `about` (static). They share the services and cross-tab components of `ui.page.Page`.
"""
