"""Form fields that hand their raw value to the handler.

Gradio's own fields check their values before a handler runs (a slider below its minimum, a
number that is not one, a choice that is not listed) and answer an API caller with an error
outside the page. `raw(field)` skips that check for one field, so every value reaches the
handler, which validates it once (`DecodeSettings.from_inputs`, run specs) and answers with the
same readable message in the page as for any other bad input. It also lets an API caller tick a
method that the page only lists with more personas (e.g. "C alone").

(An instance attribute rather than a subclass: Gradio writes a ``.pyi`` file next to the source
of every component subclass it sees, which a read-only install cannot do.)
"""

from __future__ import annotations

import gradio as gr


def raw(field: gr.components.Component) -> gr.components.Component:
    """`field`, passing its value to the handler unchecked."""
    field.preprocess = lambda payload: payload
    return field
