"""`python manage.py new-resource`: a resource written the way the hand-written ones are (resource.py: names,
fields and files; migration.py: its migration; templates/: the modules)."""
