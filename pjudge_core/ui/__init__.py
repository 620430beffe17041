"""The app, below `app.py`: everything it needs, testable without a browser.

  * `tabs/`: one module per tab (its layout, its events, its handlers), sharing a `page.Page`;
  * `form` (the lab form's fields, declared once), `lab` (panels decoding side by side), `insight`
    (persona fit of finished answers, a user's example pairs);
  * `render` (token HTML: every piece of model output goes through `render.esc`), `charts` (plotly
    figures), `records` (run records for the download), `fields` (form fields passed raw);
  * serving visitors: `deployment` (hardware, public limits and models, read from the environment
    once), `access` (what a visitor may do), `models` (the shared models and their engines),
    `serving` and `turns` (how handlers and forwards share threads), `zerogpu` (a ZeroGPU call's
    duration).
"""
