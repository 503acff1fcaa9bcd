"""RPC: Region-Specific Prototype Customization for weakly supervised semantic segmentation.

The package holds every stage of the pipeline as a plain, testable function; the Snakemake workflow in
``workflow/`` only wires them together through the ``python -m rpc`` command line.

Layers (one boundary per stage). A package imports only packages of a LOWER layer (and its own modules), never
one of its own layer or above, at module level or inside a function; ``tests/test_layout.py`` checks this:

0. ``utils``: no domain knowledge: atomic file writing (``io``), devices (``device``), ``torchrun`` ranks
   (``distributed``), shards of an image list (``shard``), resumable work folders (``workdir``), a bounded pool
   of worker processes (``pool``).
1. ``data``: datasets and the file formats the stages exchange: masks (``data.palette``) and localisation maps
   (``data.maps``). ``models``: the networks, the model/checkpoint files (``models.checkpoint``) and the dense
   CRF (``models.dense_crf``).
2. The stages: ``engine`` (classifier training, backbone pretraining), ``cams`` (RS-CAM generation), ``crf``
   (pseudo masks), ``segmentation`` (DeepLabv2 training and inference), ``evaluation`` (every score, the
   Local.Maps one included, figures, summaries). A stage reads what another stage wrote only through the
   layer-1 file formats, never through the other stage's code.
3. ``cli``: the command line, which may import any stage; 4. ``__main__`` (``python -m rpc``) runs it.
"""

__version__ = "0.1.0"
