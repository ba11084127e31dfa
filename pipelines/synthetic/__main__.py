"""Entry point of ``python -m pipelines.synthetic`` (the command line is :mod:`pipelines.synthetic.cli`)."""

from pipelines.synthetic.cli import main

if __name__ == "__main__":
    main()
