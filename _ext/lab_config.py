"""JupyterLab for the chapters (`make lab` passes this file as --config): every save goes through nbdev_clean's rules
(settings.ini: no outputs, no execution counts, no kernel-display or language metadata), so a chapter opened and run in
JupyterLab stays as git has it and `make test` does not stop on "nbdev_export/nbdev_clean changed files"."""


def clean_on_save(model, **kwargs):
    "A Jupyter pre-save hook: clean a notebook (format 4) before it is written; anything else is saved as it is."
    if model.get("type") != "notebook" or model.get("content", {}).get("nbformat") != 4: return
    from nbdev.clean import _nbdev_clean
    _nbdev_clean(model["content"])  # settings.ini is read from the working directory, the repository's root


c = get_config()  # noqa: F821 (defined by Jupyter when it loads a config file)
c.ContentsManager.pre_save_hook = clean_on_save
