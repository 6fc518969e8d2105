"""``import kmexp.layers`` registers kmexp's Keras layers, so ``keras.models.load_model`` can rebuild a saved model.

    import keras
    import kmexp.layers  # noqa: F401
    model = keras.models.load_model(path)

``kmexp.load_model(path)`` does both. Importing this module imports TensorFlow.
"""

import kmexp.encoders  # noqa: F401  (each layer registers itself when its module is imported)
import kmexp.naive_bayes  # noqa: F401,E402  (a head with Naive Bayes weighting: model.nb_weighting)
import kmexp.optim  # noqa: F401,E402  (a saved model's compiled head may name kmexp's learning-rate schedule)
