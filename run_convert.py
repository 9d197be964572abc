"""The seed's batch tool: ``python run_convert.py --help`` (same as ``wfdb2dicom batch``)."""
import sys

from wfdb2dicom.batch.cli import main

if __name__ == "__main__":
    sys.exit(main())
