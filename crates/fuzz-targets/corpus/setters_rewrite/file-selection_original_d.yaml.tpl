image: app:1.0 # {"$imagepolicy": "default:app"}
