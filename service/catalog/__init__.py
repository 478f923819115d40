"""What is stored and how it gets in and out: model and dataset uploads (checked before
anything is visible), model inspection, and deletes of models and variants."""
