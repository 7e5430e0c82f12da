"""`python -m featstore` runs the command line."""

from featstore_cli.main import main

if __name__ == "__main__":
    main()
