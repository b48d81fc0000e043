"""python -m stages.config [params.yaml]: check params.yaml without loading a model."""


from stages._common import run
from stages.config import main

if __name__ == "__main__":
    run(main)
