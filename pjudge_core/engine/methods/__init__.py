"""The decoding methods, one module each, and their registry (`registry`: what a method declares).

Adding a method is one module (its decoder and its `Method`) and one line here.
"""

from . import direct, fusion, persona_judge
from .registry import (
    BASELINE,
    DEFAULT_METHOD,
    DEFAULT_SPECS,
    METHODS,
    LabOptions,
    Method,
    Panel,
    check_request,
    lab_panels,
    method_named,
    register,
    unregister,
    variant,
)

register(persona_judge.METHOD)
register(direct.METHOD)
register(fusion.METHOD)
register(persona_judge.OFFICIAL_METHOD)

__all__ = ["BASELINE", "DEFAULT_METHOD", "DEFAULT_SPECS", "METHODS", "LabOptions", "Method", "Panel", "check_request",
           "lab_panels", "method_named", "register", "unregister", "variant"]
