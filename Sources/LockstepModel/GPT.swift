// GPT-2 model.
