"""RPC: Region-Specific Prototype Customization for weakly supervised semantic segmentation.

The package holds every stage of the pipeline as a plain, testable function; the Snakemake workflow in
``workflow/`` only wires them together through the ``python -m rpc`` command line.
"""

__version__ = "0.1.0"
