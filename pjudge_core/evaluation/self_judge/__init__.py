"""The model as its own judge: persona fit of an answer (`fit`), which persona a user's pairs reveal (`inference`), AlignX alignment accuracy and judge capacity (`alignment`)."""
