"""``python -m feseq_tf.tune``: runs the tuner's command line (:func:`feseq_tf.tune.cli.main`)."""

from feseq_tf.tune.cli import main

if __name__ == "__main__":
    main()
