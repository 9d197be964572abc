"""The seed's batch tool: ``python run_convert.py --help`` (same as ``wfdb2dicom batch``).

Exit status 0 once the run completes, whatever rows failed (the seed's contract: failures
are in the output CSV and the error log); non-zero only when the run could not complete
(see ``--help``).
"""
import sys

if __name__ == "__main__":
    try:
        from wfdb2dicom.batch.cli import main
    except KeyboardInterrupt:  # Ctrl-C while Python starts: one line, as later on
        print("run_convert.py: interrupted; run the same command again to resume",
              file=sys.stderr)
        sys.exit(130)
    sys.exit(main())
