"""``python -m feseq_tf.tune``: runs the tuner's command line (:func:`feseq_tf.tune.cli.main`)."""

import sys

from feseq_tf.tune.cli import main

if __name__ == "__main__":
    main(sys.argv[1:])
