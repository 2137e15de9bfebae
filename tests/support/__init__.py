"""What the tests (and the chaos run) use to make things fail for real and to watch them."""
