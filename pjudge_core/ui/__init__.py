"""What the Gradio app needs that is testable without a browser: token HTML (`render`), plotly
figures (`charts`) and run records for the download (`records`). Every piece of model output
that reaches HTML goes through `render.esc`."""
