"""Training students: data from synthetic drives and bags, Depth Anything V2 losses, the loop.

A layer above ``pipeline`` (it reads bags with the pipeline's reader) and below ``ros`` and
``tools``; torch is imported by every module here except :mod:`.data` and :mod:`.world` (the
diverse synthetic world that ``train --world diverse`` renders).
"""
