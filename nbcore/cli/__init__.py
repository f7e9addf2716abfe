"""The ``nbcore`` command line (:mod:`.main`) and the commands too big for one function (bench, doctor, gc)."""
