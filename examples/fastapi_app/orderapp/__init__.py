"""orderapp: orders placed over HTTP, each confirmed by a pgq job."""
