"""Security suite: one test module per class of hole (issue 9); each test fails on the code before its fix."""
