image: app:1.0 # {"$imagepolicy": "flux-system:app"}
