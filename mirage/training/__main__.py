"""`python -m mirage.training [train options]` (so `accelerate launch -m mirage.training` works).

`python -m mirage.training preprocess ...` runs `mirage preprocess`; anything else is passed to
`mirage train`.
"""

import sys

from mirage.cli import app


def main() -> None:
    args = sys.argv[1:]
    if args[:1] in (["preprocess"], ["train"]):
        app(args, prog_name="mirage")
    else:
        app(["train", *args], prog_name="mirage")


if __name__ == "__main__":
    main()
