"""Property and fuzz tests: every parser facing the outside, fed hostile input."""
